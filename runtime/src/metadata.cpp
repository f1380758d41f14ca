//===- metadata.cpp - The layer metadata of docs/abi.md ------------------===//

#include "runtime/src/metadata.h"

#include "runtime/src/cuda_plan.h"
#include "runtime/src/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace moert {

using json = nlohmann::json;

namespace {
constexpr int64_t kMaxPanel = 1 << 16;
/// Inputs per panel lane: 1 (plain panels) or 2 (bf16 pairs).
constexpr int64_t kMaxKPack = 2;

/// Field accessors that report the field's path ("arguments[2].shape").
class Reader {
public:
  explicit Reader(const std::string &origin) : origin_(origin) {}

  template <typename... Args>
  [[noreturn]] void invalid(fmt::format_string<Args...> format,
                            Args &&...args) const {
    fail(MOERT_ERROR_FORMAT, "{}: invalid metadata: {}", origin_,
         fmt::format(format, std::forward<Args>(args)...));
  }

  const json &get(const json &object, const std::string &path,
                  const char *key) const {
    auto it = object.find(key);
    if (it == object.end())
      invalid("missing field '{}'", path + key);
    return *it;
  }

  std::string string(const json &object, const std::string &path,
                     const char *key) const {
    const json &v = get(object, path, key);
    if (!v.is_string() || v.get_ref<const std::string &>().empty())
      invalid("field '{}' must be a non-empty string", path + key);
    return v.get<std::string>();
  }

  bool boolean(const json &object, const std::string &path,
               const char *key) const {
    const json &v = get(object, path, key);
    if (!v.is_boolean())
      invalid("field '{}' must be true or false", path + key);
    return v.get<bool>();
  }

  /// An integer >= `min`.
  int64_t integer(const json &object, const std::string &path, const char *key,
                  int64_t min) const {
    const json &v = get(object, path, key);
    if (!v.is_number_integer() ||
        (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)) ||
        v.get<int64_t>() < min)
      invalid("field '{}' must be an integer >= {}, found {}", path + key, min,
              v.dump());
    return v.get<int64_t>();
  }

private:
  const std::string &origin_;
};

Role parseRole(const Reader &r, const json &arg, const std::string &path) {
  std::string role = r.string(arg, path, "role");
  if (role == "input")
    return Role::Input;
  if (role == "weight")
    return Role::Weight;
  if (role == "output")
    return Role::Output;
  if (role == "stats")
    return Role::Stats;
  r.invalid("field '{}role' is '{}', expected input, weight, output or stats",
            path, role);
}

ArgumentSpec parseArgument(const Reader &r, const json &arg,
                           const std::string &path) {
  if (!arg.is_object())
    r.invalid("'{}' must be an object", path.substr(0, path.size() - 1));
  ArgumentSpec spec;
  spec.name = r.string(arg, path, "name");
  spec.role = parseRole(r, arg, path);
  std::string dtype = r.string(arg, path, "dtype");
  if (dtype == "f32")
    spec.dtype = ElementType::F32;
  else if (dtype == "bf16")
    spec.dtype = ElementType::BF16;
  else if (dtype == "f16")
    spec.dtype = ElementType::F16;
  else if (dtype == "i64")
    spec.dtype = ElementType::I64;
  else
    r.invalid("field '{}dtype' is '{}', expected f32, bf16, f16 or i64", path,
              dtype);
  const json &shape = r.get(arg, path, "shape");
  if (!shape.is_array() || shape.size() > kMaxRank)
    r.invalid("field '{}shape' must be a list of at most {} integers", path,
              kMaxRank);
  for (const json &d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < -1)
      r.invalid("field '{}shape' holds {}, expected sizes or -1 (tokens)", path,
                d.dump());
    spec.shape.push_back(d.get<int64_t>());
  }
  if (arg.contains("stacked"))
    spec.stacked = r.boolean(arg, path, "stacked");
  spec.storageShape = spec.shape;
  if (arg.contains("layout")) {
    std::string layout = r.string(arg, path, "layout");
    if (layout != "panels")
      r.invalid("field '{}layout' is '{}'; this runtime knows only 'panels'",
                path, layout);
    spec.panel = r.integer(arg, path, "panel", 1);
    if (spec.panel > kMaxPanel)
      r.invalid("field '{}panel' is {}, at most {} is supported", path,
                spec.panel, kMaxPanel);
    if (arg.contains("k_pack")) {
      spec.kPack = r.integer(arg, path, "k_pack", 1);
      if (spec.kPack > kMaxKPack)
        r.invalid("field '{}k_pack' is {}, expected 1 or 2", path,
                  spec.kPack);
    }
  } else if (arg.contains("k_pack")) {
    r.invalid("field '{}k_pack' is only valid with layout 'panels'", path);
  }
  return spec;
}

/// Checks the panel layout's shapes; packed_shape is optional but must agree.
void checkPanels(const Reader &r, const json &arg, ArgumentSpec &a,
                 const std::string &where) {
  if (a.shape.size() < (a.stacked ? 3u : 2u))
    r.invalid("{} has layout 'panels' but its {} has fewer than two "
              "dimensions",
              where, a.stacked ? "per-expert tensor" : "shape");
  a.storageShape = panelShape(a.shape, a.panel, a.kPack);
  if (!arg.contains("packed_shape"))
    return;
  const json &packed = arg["packed_shape"];
  if (!packed.is_array() ||
      !std::all_of(packed.begin(), packed.end(),
                   [](const json &d) { return d.is_number_integer(); }) ||
      packed.get<std::vector<int64_t>>() != a.storageShape)
    r.invalid("{} has packed_shape {}, expected {} for panels of {}{}", where,
              packed.dump(), formatShape(a.storageShape), a.panel,
              a.kPack > 1 ? fmt::format(" with k_pack {}", a.kPack) : "");
}

std::string describe(const ArgumentSpec &a) {
  return fmt::format("{} {}", elementTypeName(a.dtype), formatShape(a.shape));
}

/// The role-specific rules the runtime relies on when it builds descriptors.
void checkArgument(const Reader &r, const LayerMetadata &m,
                   const ArgumentSpec &a, const std::string &where) {
  auto expect = [&](ElementType dtype, std::vector<int64_t> shape) {
    ArgumentSpec want = a;
    want.dtype = dtype;
    want.shape = std::move(shape);
    if (a.dtype != want.dtype || a.shape != want.shape)
      r.invalid("{} must be {}, found {}", where, describe(want), describe(a));
  };
  switch (a.role) {
  case Role::Input:
  case Role::Output:
    return expect(ElementType::F32, {-1, m.hiddenSize});
  case Role::Stats:
    return expect(ElementType::I64, {m.numExperts});
  case Role::Weight:
    break;
  }
  if (a.dtype == ElementType::I64)
    r.invalid("{} must be f32, bf16 or f16", where);
  for (int64_t d : a.shape)
    if (d <= 0)
      r.invalid("{} has shape {}; weight sizes must be positive", where,
                formatShape(a.shape));
  bool templated = a.name.find("{e}") != std::string::npos;
  if (a.stacked && (!templated || a.shape.empty()))
    r.invalid("{} is stacked but its name has no {{e}} or its shape no "
              "expert dimension",
              where);
  if (!a.stacked && templated)
    r.invalid("{} has {{e}} in its name but is not stacked", where);
}

void parseArguments(const Reader &r, const json &root, LayerMetadata &m) {
  const json &args = r.get(root, "", "arguments");
  if (!args.is_array() || args.empty())
    r.invalid("field 'arguments' must be a non-empty list");
  std::set<std::string> names;
  size_t counts[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < args.size(); ++i) {
    std::string path = fmt::format("arguments[{}].", i);
    ArgumentSpec a = parseArgument(r, args[i], path);
    std::string where = fmt::format("arguments[{}] ('{}')", i, a.name);
    if (!names.insert(a.name).second)
      r.invalid("{} repeats the name of an earlier argument", where);
    checkArgument(r, m, a, where);
    if (a.panel && a.role != Role::Weight)
      r.invalid("{} has a layout but is not a weight", where);
    if (a.panel)
      checkPanels(r, args[i], a, where);
    ++counts[size_t(a.role)];
    if (a.role == Role::Input)
      m.inputIndex = i;
    else if (a.role == Role::Output)
      m.outputIndex = i;
    else if (a.role == Role::Stats)
      m.statsIndex = i;
    m.arguments.push_back(std::move(a));
  }
  const char *roles[] = {"input", "weight", "output", "stats"};
  for (Role role : {Role::Input, Role::Output, Role::Stats})
    if (counts[size_t(role)] != 1)
      r.invalid("'arguments' must hold exactly one '{}' argument, found {}",
                roles[size_t(role)], counts[size_t(role)]);
}
} // namespace

std::string_view elementTypeName(ElementType type) {
  switch (type) {
  case ElementType::F32:
    return "f32";
  case ElementType::BF16:
    return "bf16";
  case ElementType::F16:
    return "f16";
  case ElementType::I64:
    return "i64";
  }
  return "?";
}

std::string_view deviceKindName(DeviceKind kind) {
  return kind == DeviceKind::Cuda ? "cuda" : "cpu";
}

std::vector<int64_t> panelShape(const std::vector<int64_t> &shape,
                                int64_t panel, int64_t kPack) {
  std::vector<int64_t> packed(shape.begin(), shape.end() - 2);
  int64_t out = shape[shape.size() - 2], in = shape.back();
  // ceil(a / b) without overflowing for sizes near INT64_MAX.
  auto ceilDiv = [](int64_t a, int64_t b) { return a / b + (a % b != 0); };
  packed.insert(packed.end(),
                {ceilDiv(out, panel), ceilDiv(in, kPack), panel * kPack});
  return packed;
}

LayerMetadata parseLayerMetadata(std::string_view text,
                                 const std::string &origin) {
  Reader r(origin);
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::exception &e) {
    r.invalid("not valid JSON: {}", jsonErrorText(e.what()));
  }
  if (!root.is_object())
    r.invalid("expected a JSON object, found {}", root.type_name());

  LayerMetadata m;
  m.abiVersion = uint64_t(r.integer(root, "", "abi_version", 0));
  if (root.contains("moec_version"))
    m.moecVersion = r.string(root, "", "moec_version");
  m.family = r.string(root, "", "family");
  m.hiddenSize = r.integer(root, "", "hidden_size", 1);
  m.numExperts = r.integer(root, "", "num_experts", 1);
  if (root.contains("top_k"))
    m.topK = r.integer(root, "", "top_k", 1);
  m.tokenIndependent = r.boolean(root, "", "token_independent");
  m.workspaceBytesPerToken =
      uint64_t(r.integer(root, "", "workspace_bytes_per_token", 0));
  m.workspaceBytesFixed =
      uint64_t(r.integer(root, "", "workspace_bytes_fixed", 0));
  if (root.contains("workspace_bytes_per_thread"))
    m.workspaceBytesPerThread =
        uint64_t(r.integer(root, "", "workspace_bytes_per_thread", 0));
  if (root.contains("device")) {
    std::string device = r.string(root, "", "device");
    if (device == "cuda")
      m.device = DeviceKind::Cuda;
    else if (device != "cpu")
      r.invalid("field 'device' is '{}', expected cpu or cuda", device);
  }
  if (root.contains("threading")) {
    std::string threading = r.string(root, "", "threading");
    if (threading == "openmp")
      m.openmp = true;
    else if (threading != "none")
      r.invalid("field 'threading' is '{}', expected none or openmp",
                threading);
  }
  parseArguments(r, root, m);
  if (m.device == DeviceKind::Cuda)
    m.cuda = parseCudaPlan(root, m, origin);
  return m;
}

} // namespace moert
