//===- spec.cpp - Layer metadata and the families' routing semantics -----===//

#include "spec.h"

#include <fmt/format.h>

#include <cmath>
#include <optional>

namespace moebench {

using nlohmann::json;

int64_t dtypeBytes(const std::string &dtype) {
  if (dtype == "f32") return 4;
  if (dtype == "bf16" || dtype == "f16") return 2;
  if (dtype == "i64") return 8;
  throw Error(fmt::format("unknown dtype '{}'", dtype));
}

int64_t WeightArg::elements() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t WeightArg::elementsPerExpert() const {
  return stacked ? elements() / shape.at(0) : elements();
}

std::vector<std::string> WeightArg::tensorNames(const std::string &prefix) const {
  if (!stacked) return {prefix + name};
  std::vector<std::string> out;
  size_t at = name.find("{e}");
  for (int64_t e = 0; e < shape.at(0); ++e)
    out.push_back(prefix + name.substr(0, at) + std::to_string(e) + name.substr(at + 3));
  return out;
}

std::vector<int64_t> WeightArg::tensorShape() const {
  if (!stacked) return shape;
  return std::vector<int64_t>(shape.begin() + 1, shape.end());
}

// --- metadata ---

namespace {

bool isSharedName(const std::string &name) {
  return name.rfind("shared_expert", 0) == 0;  // shared_expert., shared_experts., shared_expert_gate
}

template <typename T>
T field(const json &j, const char *key, const char *what) {
  if (!j.contains(key)) throw Error(fmt::format("layer metadata: missing field '{}' ({})", key, what));
  try {
    return j.at(key).get<T>();
  } catch (const json::exception &) {
    throw Error(fmt::format("layer metadata: field '{}' has the wrong type", key));
  }
}

}  // namespace

LayerInfo LayerInfo::fromMetadata(const std::string &text) {
  LayerInfo l;
  try {
    l.metadata = json::parse(text);
  } catch (const json::exception &e) {
    throw Error(fmt::format("layer metadata is not valid JSON ({})", e.what()));
  }
  const json &m = l.metadata;
  l.family = field<std::string>(m, "family", "model family");
  l.moecVersion = m.value("moec_version", std::string("?"));
  l.activationDtype = m.value("activation_dtype", std::string("f32"));
  l.threading = m.value("threading", std::string("none"));
  l.gpuMma = m.value("gpu_mma", std::string());
  l.hidden = field<int64_t>(m, "hidden_size", "");
  l.experts = field<int64_t>(m, "num_experts", "");
  l.topK = field<int64_t>(m, "top_k", "");
  l.capacity = m.value("capacity", int64_t(0));
  l.tokenIndependent = m.value("token_independent", true);
  int64_t routerElements = 0;
  for (const json &a : field<json>(m, "arguments", "")) {
    if (a.value("role", "") != "weight") continue;
    WeightArg w;
    w.name = field<std::string>(a, "name", "argument name");
    w.dtype = field<std::string>(a, "dtype", "argument dtype");
    w.shape = field<std::vector<int64_t>>(a, "shape", "argument shape");
    w.stacked = a.value("stacked", false);
    if (w.stacked && (w.shape.size() < 2 || w.shape[0] != l.experts))
      throw Error(fmt::format("layer metadata: stacked weight '{}' does not lead with the {} experts",
                              w.name, l.experts));
    if (w.stacked) {
      l.expertElements += w.elementsPerExpert();
      l.expertBytes += w.elementsPerExpert() * dtypeBytes(w.dtype);
      if (l.expertDtype.empty()) l.expertDtype = w.dtype;
      else if (l.expertDtype != w.dtype) l.expertDtype = "mixed";
    } else if (isSharedName(w.name)) {
      l.sharedElements += w.elements();
      l.sharedBytes += w.elements() * dtypeBytes(w.dtype);
    } else if (w.shape.size() == 2) {
      routerElements += w.elements();  // the router (a bias has rank 1: no FLOPs counted)
    }
    l.weights.push_back(std::move(w));
  }
  if (l.expertElements == 0) throw Error("layer metadata: no stacked expert weights");
  l.flopsPerToken = 2.0 * (double(l.topK) * double(l.expertElements) + double(l.sharedElements) +
                           double(routerElements));
  return l;
}

double LayerInfo::weightBytes(int64_t hit, int bytesPerElement) const {
  if (bytesPerElement == 0) return double(hit) * double(expertBytes) + double(sharedBytes);
  return (double(hit) * double(expertElements) + double(sharedElements)) * bytesPerElement;
}

// --- config.json, as tests/reference/moe_reference.py reads it ---

namespace {

const json &get(const json &cfg, const std::string &key) {
  if (!cfg.contains(key) || cfg.at(key).is_null())
    throw Error(fmt::format("config.json: missing key '{}' for model_type '{}'", key,
                            cfg.value("model_type", std::string("?"))));
  return cfg.at(key);
}

int64_t positiveInt(const json &cfg, const std::string &key, std::optional<int64_t> dflt = {}) {
  const json *v = &cfg;
  json tmp;
  if ((!cfg.contains(key) || cfg.at(key).is_null()) && dflt) {
    tmp = *dflt;
    v = &tmp;
  } else {
    v = &get(cfg, key);
  }
  if (!v->is_number_integer() || v->get<int64_t>() <= 0)
    throw Error(fmt::format("config.json: '{}' must be a positive integer, got {}", key, v->dump()));
  return v->get<int64_t>();
}

std::string str(const json &cfg, const std::string &key, const std::string &dflt) {
  if (!cfg.contains(key) || cfg.at(key).is_null()) return dflt;
  if (!cfg.at(key).is_string()) throw Error(fmt::format("config.json: '{}' must be a string", key));
  return cfg.at(key).get<std::string>();
}

bool boolean(const json &cfg, const std::string &key, bool dflt) {
  if (!cfg.contains(key) || cfg.at(key).is_null()) return dflt;
  const json &v = cfg.at(key);
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  throw Error(fmt::format("config.json: '{}' must be a boolean", key));
}

double number(const json &cfg, const std::string &key, double dflt) {
  if (!cfg.contains(key) || cfg.at(key).is_null()) return dflt;
  if (!cfg.at(key).is_number()) throw Error(fmt::format("config.json: '{}' must be a number", key));
  return cfg.at(key).get<double>();
}

void qwenExpertNames(Spec &s) {
  s.names["router"] = "gate.weight";
  s.names["gate"] = "experts.{e}.gate_proj.weight";
  s.names["up"] = "experts.{e}.up_proj.weight";
  s.names["down"] = "experts.{e}.down_proj.weight";
}

void sharedNames(Spec &s, const std::string &stem) {
  s.names["shared_gate"] = stem + ".gate_proj.weight";
  s.names["shared_up"] = stem + ".up_proj.weight";
  s.names["shared_down"] = stem + ".down_proj.weight";
}

void validate(Spec &s) {
  static const char *acts[] = {"silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu"};
  bool ok = false;
  for (const char *a : acts) ok |= s.act == a;
  if (!ok) throw Error(fmt::format("config.json: unsupported activation '{}'", s.act));
  if (s.topK > s.experts)
    throw Error(fmt::format("config.json: num_experts_per_tok ({}) exceeds the number of experts ({})",
                            s.topK, s.experts));
  if (!s.groupScore.empty()) {
    if (s.experts % s.nGroup || s.topkGroup > s.nGroup)
      throw Error(fmt::format("config.json: n_group ({}) must divide the {} experts and topk_group "
                              "({}) must not exceed it", s.nGroup, s.experts, s.topkGroup));
    if (s.topK > s.topkGroup * (s.experts / s.nGroup))
      throw Error(fmt::format("config.json: num_experts_per_tok ({}) exceeds the experts of the {} "
                              "kept groups", s.topK, s.topkGroup));
  }
}

}  // namespace

Spec Spec::fromConfig(const json &cfg) {
  if (!cfg.is_object()) throw Error("config.json: not a JSON object");
  Spec s;
  s.source = "config";
  s.family = str(cfg, "model_type", "");
  const std::string &f = s.family;
  if (f == "mixtral") {
    s.hidden = positiveInt(cfg, "hidden_size");
    s.inter = positiveInt(cfg, "intermediate_size");
    s.experts = positiveInt(cfg, "num_local_experts");
    s.topK = positiveInt(cfg, "num_experts_per_tok");
    s.act = str(cfg, "hidden_act", "silu");
    s.renormalize = true;
    s.names = {{"router", "gate.weight"}, {"gate", "experts.{e}.w1.weight"},
               {"up", "experts.{e}.w3.weight"}, {"down", "experts.{e}.w2.weight"}};
  } else if (f == "qwen2_moe" || f == "qwen3_moe" || f == "olmoe") {
    s.hidden = positiveInt(cfg, "hidden_size");
    s.inter = positiveInt(cfg, f == "olmoe" ? "intermediate_size" : "moe_intermediate_size");
    s.experts = positiveInt(cfg, "num_experts");
    s.topK = positiveInt(cfg, "num_experts_per_tok");
    s.act = str(cfg, "hidden_act", "silu");
    s.renormalize = boolean(cfg, "norm_topk_prob", false);
    qwenExpertNames(s);
    if (f == "qwen2_moe") {
      s.sharedInter = positiveInt(cfg, "shared_expert_intermediate_size");
      sharedNames(s, "shared_expert");
      s.names["shared_expert_gate"] = "shared_expert_gate.weight";
      s.sharedGate = true;
    }
  } else if (f == "deepseek_v2" || f == "deepseek_v3") {
    bool v3 = f == "deepseek_v3";
    s.topK = positiveInt(cfg, "num_experts_per_tok");
    s.scoring = str(cfg, "scoring_func", v3 ? "sigmoid" : "softmax");
    std::string method = str(cfg, "topk_method", v3 ? "noaux_tc" : "greedy");
    bool ok = v3 ? (s.scoring == "sigmoid" && method == "noaux_tc")
                 : (s.scoring == "softmax" && (method == "greedy" || method == "group_limited_greedy"));
    if (!ok)
      throw Error(fmt::format("config.json: {} with scoring_func '{}' and topk_method '{}' is not "
                              "supported", f, s.scoring, method));
    s.groupScore = method == "greedy" ? "" : method == "group_limited_greedy" ? "max" : "top2_sum";
    if (!s.groupScore.empty()) {
      s.nGroup = positiveInt(cfg, "n_group", v3 ? std::optional<int64_t>(8) : std::nullopt);
      s.topkGroup = positiveInt(cfg, "topk_group", v3 ? std::optional<int64_t>(4) : std::nullopt);
    }
    s.renormalize = s.topK > 1 && boolean(cfg, "norm_topk_prob", v3);
    double rsf = number(cfg, "routed_scaling_factor", v3 ? 2.5 : 1.0);
    s.scaling = (v3 || !s.renormalize) ? rsf : 1.0;
    s.renormEps = 1e-20;
    int64_t nShared = v3 ? 1 : 2;
    if (cfg.contains("n_shared_experts"))
      nShared = cfg.at("n_shared_experts").is_null() ? 0 : cfg.at("n_shared_experts").get<int64_t>();
    s.inter = positiveInt(cfg, "moe_intermediate_size");
    s.hidden = positiveInt(cfg, "hidden_size");
    s.experts = positiveInt(cfg, "n_routed_experts");
    s.act = str(cfg, "hidden_act", "silu");
    qwenExpertNames(s);
    if (v3) s.names["bias"] = "gate.e_score_correction_bias";
    if (nShared > 0) {
      s.sharedInter = nShared * s.inter;
      sharedNames(s, "shared_experts");
    }
  } else if (f == "switch_transformers") {
    std::string ff = str(cfg, "feed_forward_proj", "relu");
    std::string lastPart = ff.substr(ff.rfind('-') == std::string::npos ? 0 : ff.rfind('-') + 1);
    s.act = str(cfg, "dense_act_fn", lastPart);
    if (boolean(cfg, "is_gated_act", ff.rfind("gated-", 0) == 0))
      throw Error("config.json: switch_transformers with is_gated_act is not supported");
    s.hidden = positiveInt(cfg, "d_model");
    s.inter = positiveInt(cfg, "d_ff");
    s.experts = positiveInt(cfg, "num_experts");
    s.topK = 1;
    s.capacity = positiveInt(cfg, "expert_capacity", 64);
    s.names = {{"router", "router.classifier.weight"}, {"up", "experts.expert_{e}.wi.weight"},
               {"down", "experts.expert_{e}.wo.weight"}};
  } else {
    throw Error(fmt::format("config.json: unsupported model_type '{}'", f));
  }
  validate(s);
  return s;
}

Spec Spec::fromLayer(const LayerInfo &l) {
  // What a config with only the sizes would give: the transformers defaults.
  json cfg = {{"model_type", l.family}};
  auto find = [&](const std::string &name) -> const WeightArg * {
    for (const WeightArg &w : l.weights)
      if (w.name == name) return &w;
    return nullptr;
  };
  auto width = [&](const std::string &name) -> int64_t {
    const WeightArg *w = find(name);
    if (!w) throw Error(fmt::format("layer metadata: no weight '{}' for family {}", name, l.family));
    return w->shape[w->shape.size() - 2];
  };
  const std::string &f = l.family;
  if (f == "mixtral") {
    cfg.update({{"hidden_size", l.hidden}, {"intermediate_size", width("experts.{e}.w1.weight")},
                {"num_local_experts", l.experts}, {"num_experts_per_tok", l.topK}});
  } else if (f == "qwen2_moe" || f == "qwen3_moe" || f == "olmoe") {
    cfg.update({{"hidden_size", l.hidden}, {"num_experts", l.experts}, {"num_experts_per_tok", l.topK},
                {f == "olmoe" ? "intermediate_size" : "moe_intermediate_size",
                 width("experts.{e}.gate_proj.weight")}});
    if (f == "qwen2_moe")
      cfg["shared_expert_intermediate_size"] = width("shared_expert.gate_proj.weight");
  } else if (f == "deepseek_v2" || f == "deepseek_v3") {
    int64_t inter = width("experts.{e}.gate_proj.weight");
    const WeightArg *sh = find("shared_experts.gate_proj.weight");
    cfg.update({{"hidden_size", l.hidden}, {"n_routed_experts", l.experts},
                {"num_experts_per_tok", l.topK}, {"moe_intermediate_size", inter},
                {"n_shared_experts", sh ? sh->shape[0] / inter : 0}});
  } else if (f == "switch_transformers") {
    cfg.update({{"d_model", l.hidden}, {"d_ff", width("experts.expert_{e}.wi.weight")},
                {"num_experts", l.experts}, {"expert_capacity", l.capacity}});
  }
  Spec s = fromConfig(cfg);
  s.source = "metadata defaults";
  return s;
}

void Spec::checkAgainst(const LayerInfo &l) const {
  for (const auto &[role, name] : names) {
    bool found = false;
    for (const WeightArg &w : l.weights) found |= w.name == name;
    if (!found)
      throw Error(fmt::format("the layer has no weight '{}' ({} of a {} block)", name, role, family));
  }
  if (hidden != l.hidden || experts != l.experts || topK != l.topK)
    throw Error(fmt::format("the config ({} hidden, {} experts, top-{}) does not describe the layer "
                            "({} hidden, {} experts, top-{})", hidden, experts, topK, l.hidden,
                            l.experts, l.topK));
}

json Spec::toJson() const {
  return {{"family", family}, {"hidden", hidden}, {"inter", inter}, {"experts", experts},
          {"top_k", topK}, {"act", act}, {"scoring", scoring}, {"group_score", groupScore},
          {"n_group", nGroup}, {"topk_group", topkGroup}, {"renormalize", renormalize},
          {"renorm_eps", renormEps}, {"scaling", scaling}, {"capacity", capacity},
          {"shared_inter", sharedInter}, {"shared_gate", sharedGate}, {"names", names},
          {"source", source}};
}

}  // namespace moebench
