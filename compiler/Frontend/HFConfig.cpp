//===- HFConfig.cpp - Hugging Face config.json frontend -------------------===//
//
// Each family's keys and defaults follow its reference modeling code
// (transformers' configuration_*.py / modeling_*.py); see design.md §2.
//
//===----------------------------------------------------------------------===//

#include "compiler/Frontend/HFConfig.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

#include <cmath>
#include <optional>

using namespace mlir;
using namespace mlir::moe;
namespace json = llvm::json;

ArrayRef<StringRef> mlir::moe::supportedFamilies() {
  static const StringRef families[] = {
      "mixtral",     "qwen2_moe",   "qwen3_moe",          "olmoe",
      "deepseek_v2", "deepseek_v3", "switch_transformers"};
  return families;
}

namespace {
/// A string from the config, quoted for an error message: control and
/// non-ASCII bytes escaped (\0A), so that the message stays one line.
std::string quoted(StringRef value) {
  std::string out = "'";
  llvm::raw_string_ostream os(out);
  llvm::printEscapedString(value, os);
  os << "'";
  return out;
}

/// Typed access to a config object; the first error wins and later reads
/// return defaults, so a family reader stays a flat list of keys.
class ConfigReader {
public:
  ConfigReader(const json::Object &object, StringRef family)
      : object(object), family(family.str()) {}

  /// Every size and count is at most 2^20: far above any model's (hidden
  /// sizes and widths are tens of thousands, experts hundreds), and small
  /// enough that products of three (a stacked weight's element count, byte
  /// sizes) cannot overflow 64 bits anywhere downstream.
  static constexpr int64_t kMaxSize = int64_t(1) << 20;

  int64_t positive(StringRef key) {
    std::optional<int64_t> v = integer(key, /*required=*/true);
    if (v && *v <= 0)
      fail(llvm::formatv("'{0}' must be positive, got {1}", key, *v));
    return bounded(key, v).value_or(1);
  }
  int64_t nonNegative(StringRef key, int64_t fallback) {
    std::optional<int64_t> v = integer(key, /*required=*/false);
    if (v && *v < 0)
      fail(llvm::formatv("'{0}' must not be negative, got {1}", key, *v));
    return bounded(key, v).value_or(fallback);
  }
  int64_t positiveOr(StringRef key, int64_t fallback) {
    std::optional<int64_t> v = integer(key, /*required=*/false);
    if (v && *v <= 0)
      fail(llvm::formatv("'{0}' must be positive, got {1}", key, *v));
    return bounded(key, v).value_or(fallback);
  }
  std::optional<int64_t> bounded(StringRef key, std::optional<int64_t> v) {
    if (v && *v > kMaxSize) {
      fail(llvm::formatv("'{0}' is {1}, more than moec supports ({2})", key,
                         *v, kMaxSize));
      return std::nullopt;
    }
    return v;
  }
  bool boolean(StringRef key, bool fallback) {
    const json::Value *v = find(key);
    if (!v)
      return fallback;
    if (std::optional<bool> b = v->getAsBoolean())
      return *b;
    fail(llvm::formatv("'{0}' must be true or false", key));
    return fallback;
  }
  double number(StringRef key, double fallback) {
    const json::Value *v = find(key);
    if (!v)
      return fallback;
    std::optional<double> d = v->getAsNumber();
    if (!d || !std::isfinite(*d)) {
      fail(llvm::formatv("'{0}' must be a finite number", key));
      return fallback;
    }
    return *d;
  }
  std::string string(StringRef key, StringRef fallback) {
    const json::Value *v = find(key);
    if (!v)
      return fallback.str();
    if (std::optional<StringRef> s = v->getAsString())
      return s->str();
    fail(llvm::formatv("'{0}' must be a string", key));
    return fallback.str();
  }
  /// The first present key of `keys` (e.g. `d_model` or `hidden_size`).
  int64_t positiveAnyOf(ArrayRef<StringRef> keys) {
    for (StringRef key : keys)
      if (find(key))
        return positive(key);
    fail(llvm::formatv("missing key '{0}'", keys.front()));
    return 1;
  }

  Activation activation(StringRef key, StringRef fallback) {
    std::string name = string(key, fallback);
    auto act = llvm::StringSwitch<std::optional<Activation>>(name)
                   .Cases({"silu", "swish"}, Activation::silu)
                   .Case("gelu", Activation::gelu)
                   .Cases({"gelu_pytorch_tanh", "gelu_new"},
                          Activation::gelu_tanh)
                   .Case("relu", Activation::relu)
                   .Default(std::nullopt);
    if (!act)
      fail(llvm::formatv("unsupported activation {0} in '{1}' (supported: "
                         "silu, gelu, gelu_pytorch_tanh, gelu_new, relu)",
                         quoted(name), key));
    return act.value_or(Activation::silu);
  }

  void fail(const llvm::Twine &message) {
    if (error.empty())
      error = (family + " config: " + message).str();
  }
  llvm::Error takeError() {
    if (error.empty())
      return llvm::Error::success();
    return llvm::createStringError(llvm::inconvertibleErrorCode(), error);
  }

private:
  const json::Value *find(StringRef key) {
    const json::Value *v = object.get(key);
    return v && v->kind() != json::Value::Null ? v : nullptr;
  }
  std::optional<int64_t> integer(StringRef key, bool required) {
    const json::Value *v = find(key);
    if (!v) {
      if (required)
        fail(llvm::formatv("missing key '{0}'", key));
      return std::nullopt;
    }
    if (std::optional<int64_t> i = v->getAsInteger())
      return i;
    fail(llvm::formatv("'{0}' must be an integer", key));
    return std::nullopt;
  }

  const json::Object &object;
  std::string family;
  std::string error;
};

void useQwenExpertNames(LayerSpec &spec) {
  spec.routerName = "gate.weight";
  spec.expertGateName = "experts.{e}.gate_proj.weight";
  spec.expertUpName = "experts.{e}.up_proj.weight";
  spec.expertDownName = "experts.{e}.down_proj.weight";
}

void readMixtral(ConfigReader &r, LayerSpec &spec) {
  spec.hidden = r.positive("hidden_size");
  spec.width = r.positive("intermediate_size");
  spec.experts = r.positive("num_local_experts");
  spec.k = r.positive("num_experts_per_tok");
  spec.activation = r.activation("hidden_act", "silu");
  spec.renormalize = true;
  spec.routerName = "gate.weight";
  spec.expertGateName = "experts.{e}.w1.weight";
  spec.expertUpName = "experts.{e}.w3.weight";
  spec.expertDownName = "experts.{e}.w2.weight";
}

void readQwenLike(ConfigReader &r, LayerSpec &spec, StringRef widthKey) {
  spec.hidden = r.positive("hidden_size");
  spec.width = r.positive(widthKey);
  spec.experts = r.positive("num_experts");
  spec.k = r.positive("num_experts_per_tok");
  spec.activation = r.activation("hidden_act", "silu");
  spec.renormalize = r.boolean("norm_topk_prob", false);
  useQwenExpertNames(spec);
}

void readQwen2(ConfigReader &r, LayerSpec &spec) {
  readQwenLike(r, spec, "moe_intermediate_size");
  spec.sharedWidth = r.nonNegative("shared_expert_intermediate_size", 0);
  if (spec.sharedWidth > 0) {
    spec.sharedGateName = "shared_expert.gate_proj.weight";
    spec.sharedUpName = "shared_expert.up_proj.weight";
    spec.sharedDownName = "shared_expert.down_proj.weight";
    spec.sharedExpertGateName = "shared_expert_gate.weight";
  }
}

/// `n_shared_experts` defaults as in DeepseekV2Config (2) and
/// DeepseekV3Config (1); null or 0 means none.
void readDeepSeekShared(ConfigReader &r, LayerSpec &spec, int64_t fallback) {
  int64_t shared = r.nonNegative("n_shared_experts", fallback);
  if (shared == 0)
    return;
  spec.sharedWidth = shared * spec.width;
  spec.sharedGateName = "shared_experts.gate_proj.weight";
  spec.sharedUpName = "shared_experts.up_proj.weight";
  spec.sharedDownName = "shared_experts.down_proj.weight";
}

void readDeepSeekCommon(ConfigReader &r, LayerSpec &spec) {
  spec.hidden = r.positive("hidden_size");
  spec.width = r.positive("moe_intermediate_size");
  spec.experts = r.positive("n_routed_experts");
  spec.k = r.positive("num_experts_per_tok");
  spec.activation = r.activation("hidden_act", "silu");
  useQwenExpertNames(spec);
}

void readDeepSeekV2(ConfigReader &r, LayerSpec &spec) {
  readDeepSeekCommon(r, spec);
  std::string scoring = r.string("scoring_func", "softmax");
  if (scoring != "softmax")
    r.fail("deepseek_v2 supports scoring_func 'softmax' only, got " +
           quoted(scoring));
  std::string method = r.string("topk_method", "greedy");
  if (method == "group_limited_greedy") {
    spec.groups = r.positive("n_group");
    spec.topkGroups = r.positive("topk_group");
    spec.groupScore = GroupScore::max;
  } else if (method != "greedy") {
    r.fail("unsupported topk_method " + quoted(method) +
           " (deepseek_v2: greedy, group_limited_greedy)");
  }
  // DeepSeek-V2 either renormalises or scales, never both.
  double scale = r.number("routed_scaling_factor", 1.0);
  if (r.boolean("norm_topk_prob", false) && spec.k > 1)
    spec.renormalize = true;
  else
    spec.scalingFactor = scale;
  readDeepSeekShared(r, spec, /*fallback=*/2);
}

void readDeepSeekV3(ConfigReader &r, LayerSpec &spec) {
  readDeepSeekCommon(r, spec);
  std::string scoring = r.string("scoring_func", "sigmoid");
  if (scoring != "sigmoid")
    r.fail("deepseek_v3 supports scoring_func 'sigmoid' only, got " +
           quoted(scoring));
  std::string method = r.string("topk_method", "noaux_tc");
  if (method != "noaux_tc")
    r.fail("unsupported topk_method " + quoted(method) +
           " (deepseek_v3: noaux_tc)");
  spec.scoring = ScoringFunc::sigmoid;
  // Absent keys take DeepseekV3Config's defaults, as the reference does.
  spec.groups = r.positiveOr("n_group", 8);
  spec.topkGroups = r.positiveOr("topk_group", 4);
  spec.groupScore = GroupScore::top2_sum;
  spec.biasName = "gate.e_score_correction_bias";
  spec.renormalize = r.boolean("norm_topk_prob", true) && spec.k > 1;
  spec.scalingFactor = r.number("routed_scaling_factor", 2.5);
  readDeepSeekShared(r, spec, /*fallback=*/1);
}

void readSwitch(ConfigReader &r, LayerSpec &spec) {
  spec.hidden = r.positiveAnyOf({"d_model", "hidden_size"});
  spec.width = r.positive("d_ff");
  spec.experts = r.positive("num_experts");
  spec.k = 1;
  spec.capacity = r.positiveOr("expert_capacity", 64);
  // SwitchTransformersConfig derives the activation from feed_forward_proj
  // ("relu", "gated-gelu", ...) unless dense_act_fn names it.
  std::string proj = r.string("feed_forward_proj", "relu");
  StringRef act = StringRef(proj).rsplit('-').second;
  spec.activation = r.activation("dense_act_fn", act.empty() ? proj : act);
  if (r.boolean("is_gated_act", false) || StringRef(proj).starts_with("gated-"))
    r.fail("gated experts ('is_gated_act' or a 'gated-' feed_forward_proj) "
           "are not supported: Switch experts are wi/wo");
  if (r.boolean("router_bias", false))
    r.fail("a router bias ('router_bias': true) is not supported");
  spec.routerName = "router.classifier.weight";
  spec.expertUpName = "experts.expert_{e}.wi.weight";
  spec.expertDownName = "experts.expert_{e}.wo.weight";
}

/// The rules moe.layer's verifier also checks, phrased in the config's keys.
void checkSelection(ConfigReader &r, const LayerSpec &spec) {
  if (spec.k > spec.experts)
    r.fail(llvm::formatv("num_experts_per_tok ({0}) exceeds the number of "
                         "experts ({1})",
                         spec.k, spec.experts));
  else if (spec.experts % spec.groups != 0)
    r.fail(llvm::formatv("n_group ({0}) does not divide the number of "
                         "experts ({1})",
                         spec.groups, spec.experts));
  else if (spec.topkGroups > spec.groups)
    r.fail(llvm::formatv("topk_group ({0}) exceeds n_group ({1})",
                         spec.topkGroups, spec.groups));
  else if (spec.k > spec.topkGroups * (spec.experts / spec.groups))
    r.fail(llvm::formatv("num_experts_per_tok ({0}) exceeds the {1} experts "
                         "of the topk_group best groups",
                         spec.k, spec.topkGroups * (spec.experts / spec.groups)));
  else if (spec.groupScore == GroupScore::top2_sum && spec.groups > 1 &&
           spec.experts / spec.groups < 2)
    r.fail(llvm::formatv("noaux_tc needs at least 2 experts per group, got {0}",
                         spec.experts / spec.groups));
  else if (!(spec.scalingFactor > 0.0))
    r.fail(llvm::formatv("routed_scaling_factor must be positive, got {0}",
                         spec.scalingFactor));
}
} // namespace

llvm::Expected<LayerSpec> mlir::moe::parseHFConfig(StringRef text) {
  llvm::Expected<json::Value> parsed = json::parse(text);
  if (!parsed)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "invalid JSON: " +
                                       llvm::toString(parsed.takeError()));
  const json::Object *object = parsed->getAsObject();
  if (!object)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "the config must be a JSON object");
  std::optional<StringRef> family = object->getString("model_type");
  if (!family)
    return llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "missing key 'model_type' (one of: " +
            llvm::join(supportedFamilies(), ", ") + ")");

  LayerSpec spec;
  spec.family = family->str();
  ConfigReader r(*object, *family);
  if (*family == "mixtral")
    readMixtral(r, spec);
  else if (*family == "qwen2_moe")
    readQwen2(r, spec);
  else if (*family == "qwen3_moe")
    readQwenLike(r, spec, "moe_intermediate_size");
  else if (*family == "olmoe")
    readQwenLike(r, spec, "intermediate_size");
  else if (*family == "deepseek_v2")
    readDeepSeekV2(r, spec);
  else if (*family == "deepseek_v3")
    readDeepSeekV3(r, spec);
  else if (*family == "switch_transformers")
    readSwitch(r, spec);
  else
    return llvm::createStringError(
        llvm::inconvertibleErrorCode(),
        "unknown model_type " + quoted(*family) +
            " (supported: " + llvm::join(supportedFamilies(), ", ") + ")");
  if (llvm::Error err = r.takeError())
    return std::move(err);
  checkSelection(r, spec);
  if (llvm::Error err = r.takeError())
    return std::move(err);
  return spec;
}
