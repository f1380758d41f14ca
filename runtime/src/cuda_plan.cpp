//===- cuda_plan.cpp - A cuda layer's launch plan (docs/abi.md) ----------===//

#include "runtime/src/cuda_plan.h"

#include "runtime/src/cuda_driver.h"

#include "runtime/src/error.h"
#include "runtime/src/metadata.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace moert {

using json = nlohmann::json;

namespace {
/// Expressions deeper than this are refused (they would only come from a
/// corrupt file, and evaluation recurses).
constexpr int kMaxExprDepth = 64;

constexpr struct {
  const char *name;
  ExprNode::Op op;
} kOps[] = {
    {"addi", ExprNode::Op::AddI},           {"subi", ExprNode::Op::SubI},
    {"muli", ExprNode::Op::MulI},           {"divui", ExprNode::Op::DivUI},
    {"ceildivui", ExprNode::Op::CeilDivUI}, {"remui", ExprNode::Op::RemUI},
    {"minui", ExprNode::Op::MinUI},         {"maxui", ExprNode::Op::MaxUI}};

constexpr struct {
  const char *name;
  BufferType type;
} kBufferTypes[] = {{"f32", BufferType::F32}, {"bf16", BufferType::BF16},
                    {"f16", BufferType::F16}, {"i32", BufferType::I32},
                    {"i64", BufferType::I64}, {"i8", BufferType::I8}};

bool divides(ExprNode::Op op) {
  return op == ExprNode::Op::DivUI || op == ExprNode::Op::CeilDivUI ||
         op == ExprNode::Op::RemUI;
}

/// "[128, ?, 1]": launch dimensions, "?" for those not known yet.
std::string formatDims(const uint64_t (&dims)[3], const bool (&known)[3]) {
  std::string text = "[";
  for (int i = 0; i < 3; ++i)
    text += (i ? ", " : "") + (known[i] ? std::to_string(dims[i]) : "?");
  return text + "]";
}

/// What is wrong with a grid (an empty string if nothing).
std::string gridProblem(const uint64_t (&grid)[3], const bool (&known)[3]) {
  bool ok = (!known[0] || (grid[0] >= 1 && grid[0] <= kMaxGridX)) &&
            (!known[1] || (grid[1] >= 1 && grid[1] <= kMaxGridYZ)) &&
            (!known[2] || (grid[2] >= 1 && grid[2] <= kMaxGridYZ));
  if (ok)
    return "";
  return fmt::format("grid {} is outside CUDA's limits (x in [1, {}], y and "
                     "z in [1, {}])",
                     formatDims(grid, known), kMaxGridX, kMaxGridYZ);
}

std::string blockProblem(const uint64_t (&block)[3], const bool (&known)[3]) {
  bool ok = true;
  uint64_t threads = 1;
  for (int i = 0; i < 3; ++i) {
    if (!known[i])
      continue;
    ok = ok && block[i] >= 1 && block[i] <= kMaxBlockThreads;
    threads = ok ? threads * block[i] : threads;
  }
  ok = ok && threads <= kMaxBlockThreads &&
       (!known[2] || block[2] <= kMaxBlockZ);
  if (ok)
    return "";
  return fmt::format("block {} is outside CUDA's limits (each dimension at "
                     "least 1, z at most {}, at most {} threads)",
                     formatDims(block, known), kMaxBlockZ, kMaxBlockThreads);
}

/// `value` rounded up to kPlanBufferAlignment; sets `overflow` if it wraps.
uint64_t alignUp(uint64_t value, bool &overflow) {
  uint64_t sum = 0;
  if (__builtin_add_overflow(value, kPlanBufferAlignment - 1, &sum))
    overflow = true;
  return sum & ~(kPlanBufferAlignment - 1);
}

class PlanParser {
public:
  PlanParser(const LayerMetadata &m, const std::string &origin, CudaPlan &plan)
      : m_(m), origin_(origin), plan_(plan) {}

  template <typename... Args>
  [[noreturn]] void invalid(fmt::format_string<Args...> format,
                            Args &&...args) const {
    fail(MOERT_ERROR_FORMAT, "{}: invalid metadata: {}", origin_,
         fmt::format(format, std::forward<Args>(args)...));
  }

  void parse(const json &root) {
    auto it = root.find("cuda");
    if (it == root.end())
      invalid("missing field 'cuda' (a cuda layer needs its launch plan)");
    const json &cuda = *it;
    if (!cuda.is_object())
      invalid("field 'cuda' must be an object");
    for (const ArgumentSpec &a : m_.arguments)
      if (a.panel)
        invalid("argument '{}' has layout 'panels'; a cuda layer's weights "
                "are never packed",
                a.name);

    plan_.arch = string(cuda, "arch");
    if (!isArch(plan_.arch))
      invalid("field 'cuda.arch' is '{}', expected a CUDA architecture such "
              "as sm_90a",
              plan_.arch);
    std::string image = string(cuda, "image");
    if (image != "fatbin")
      invalid("field 'cuda.image' is '{}'; this runtime loads only 'fatbin'",
              image);

    const json &buffers = get(cuda, "buffers");
    if (!buffers.is_array())
      invalid("field 'cuda.buffers' must be a list");
    for (size_t i = 0; i < buffers.size(); ++i)
      plan_.buffers.push_back(
          buffer(buffers[i], fmt::format("cuda.buffers[{}]", i)));

    const json &steps = get(cuda, "steps");
    if (!steps.is_array())
      invalid("field 'cuda.steps' must be a list");
    for (size_t i = 0; i < steps.size(); ++i)
      plan_.steps.push_back(step(steps[i], fmt::format("cuda.steps[{}]", i)));

    const json &results = get(cuda, "results");
    if (!results.is_array() || results.size() != 2)
      invalid("field 'cuda.results' must be a list of 2 buffer references "
              "(the output, then the statistics)");
    result(results[0], 0, BufferType::F32, 2, "output");
    result(results[1], 1, BufferType::I64, 1, "statistics");
  }

private:
  static bool isArch(const std::string &arch) {
    // sm_<major><minor>[a], as Device::requireArch reads it.
    if (arch.rfind("sm_", 0) != 0)
      return false;
    std::string digits = arch.substr(3);
    if (!digits.empty() && digits.back() == 'a')
      digits.pop_back();
    return digits.size() >= 2 && digits.size() <= 3 && digits[0] != '0' &&
           std::all_of(digits.begin(), digits.end(),
                       [](char c) { return c >= '0' && c <= '9'; });
  }

  const json &get(const json &object, const char *key) const {
    auto it = object.find(key);
    if (it == object.end())
      invalid("missing field 'cuda.{}'", key);
    return *it;
  }

  std::string string(const json &cuda, const char *key) const {
    const json &v = get(cuda, key);
    if (!v.is_string() || v.get_ref<const std::string &>().empty())
      invalid("field 'cuda.{}' must be a non-empty string", key);
    return v.get<std::string>();
  }

  /// A non-negative integer (an index).
  uint64_t index(const json &v, const std::string &path) const {
    if (!v.is_number_integer() ||
        (!v.is_number_unsigned() && v.get<int64_t>() < 0))
      invalid("field '{}' must be an integer >= 0, found {}", path, v.dump());
    return v.get<uint64_t>();
  }

  uint32_t node(ExprNode n) {
    plan_.nodes.push_back(n);
    return uint32_t(plan_.nodes.size() - 1);
  }

  /// Parses an expression into nodes; `constant` is its value if T-free.
  uint32_t expr(const json &v, const std::string &path, int depth,
                std::optional<uint64_t> &constant) {
    if (depth > kMaxExprDepth)
      invalid("'{}' is nested more than {} levels deep", path, kMaxExprDepth);
    if (v.is_number_integer()) {
      // Unsigned 64-bit arithmetic: a negative constant is its value
      // modulo 2^64 (e.g. -1 in ["addi", "T", -1]).
      uint64_t value = v.is_number_unsigned() ? v.get<uint64_t>()
                                              : uint64_t(v.get<int64_t>());
      constant = value;
      return node({ExprNode::Op::Const, value, 0, 0});
    }
    if (v.is_string() && v.get_ref<const std::string &>() == "T") {
      constant.reset();
      return node({ExprNode::Op::Tokens, 0, 0, 0});
    }
    if (!v.is_array())
      invalid("'{}' is {}, expected an integer, \"T\" or [op, e, e]", path,
              v.dump());
    if (v.size() != 3)
      invalid("'{}' has {} elements, expected [op, e, e]", path, v.size());
    const json &name = v[0];
    auto op = std::find_if(std::begin(kOps), std::end(kOps), [&](auto &o) {
      return name.is_string() && name.get_ref<const std::string &>() == o.name;
    });
    if (op == std::end(kOps))
      invalid("'{}[0]' is {}, expected one of addi, subi, muli, divui, "
              "ceildivui, remui, minui, maxui",
              path, name.dump());
    std::optional<uint64_t> lhsValue, rhsValue;
    uint32_t lhs = expr(v[1], path + "[1]", depth + 1, lhsValue);
    uint32_t rhs = expr(v[2], path + "[2]", depth + 1, rhsValue);
    if (divides(op->op) && rhsValue == uint64_t(0))
      invalid("'{}' divides by zero", path);
    uint32_t id = node({op->op, 0, lhs, rhs});
    constant.reset();
    if (lhsValue && rhsValue) {
      PlanExpr folded{id, path, std::nullopt};
      constant = plan_.evaluate(folded, 0);
    }
    return id;
  }

  PlanExpr topExpr(const json &v, const std::string &path) {
    PlanExpr e;
    e.field = path;
    e.root = expr(v, path, 0, e.constant);
    return e;
  }

  PlanBuffer buffer(const json &v, const std::string &path) {
    if (!v.is_object())
      invalid("'{}' must be an object", path);
    PlanBuffer b;
    auto dtype = v.find("dtype");
    if (dtype == v.end())
      invalid("missing field '{}.dtype'", path);
    auto type = std::find_if(
        std::begin(kBufferTypes), std::end(kBufferTypes), [&](auto &t) {
          return dtype->is_string() &&
                 dtype->get_ref<const std::string &>() == t.name;
        });
    if (type == std::end(kBufferTypes))
      invalid("field '{}.dtype' is {}, expected f32, bf16, f16, i32, i64 or "
              "i8",
              path, dtype->dump());
    b.dtype = type->type;
    auto shape = v.find("shape");
    if (shape == v.end())
      invalid("missing field '{}.shape'", path);
    if (!shape->is_array() || shape->size() > kMaxRank)
      invalid("field '{}.shape' must be a list of at most {} expressions", path,
              kMaxRank);
    for (size_t d = 0; d < shape->size(); ++d)
      b.shape.push_back(
          topExpr((*shape)[d], fmt::format("{}.shape[{}]", path, d)));
    return b;
  }

  PlanRef ref(const json &v, const std::string &path) const {
    bool isArg = v.is_object() && v.size() == 1 && v.contains("arg");
    bool isBuffer = v.is_object() && v.size() == 1 && v.contains("buffer");
    if (!isArg && !isBuffer)
      invalid("'{}' must be {{\"arg\": i}} or {{\"buffer\": n}}, found {}",
              path, v.dump());
    PlanRef r;
    r.isBuffer = isBuffer;
    uint64_t index =
        this->index(v.begin().value(), path + (isBuffer ? ".buffer" : ".arg"));
    if (isBuffer && index >= plan_.buffers.size())
      invalid("{} refers to buffer {} of {}", path, index,
              plan_.buffers.size());
    if (isArg && index >= m_.arguments.size())
      invalid("{} refers to argument {} of {}", path, index,
              m_.arguments.size());
    if (isArg && m_.arguments[index].role != Role::Input &&
        m_.arguments[index].role != Role::Weight)
      invalid("{} refers to argument {} ('{}'), which is neither the input "
              "nor a weight",
              path, index, m_.arguments[index].name);
    r.index = size_t(index);
    return r;
  }

  /// {"tensor_map": ref, "box": [...]}: a bf16 tensor whose innermost rows
  /// TMA can copy (16-byte multiples) in boxes the 128-byte swizzle takes.
  PlanRef tensorMap(const json &v, const std::string &path) const {
    if (v.size() != 2 || !v.contains("box"))
      invalid("'{}' must be {{\"tensor_map\": ref, \"box\": [sizes]}}, "
              "found {}",
              path, v.dump());
    PlanRef r = ref(v["tensor_map"], path + ".tensor_map");
    r.isTensorMap = true;
    size_t rank;
    bool bf16;
    std::optional<uint64_t> inner;
    if (r.isBuffer) {
      const PlanBuffer &b = plan_.buffers[r.index];
      rank = b.shape.size();
      bf16 = b.dtype == BufferType::BF16;
      if (rank > 0)
        inner = b.shape.back().constant;
    } else {
      const ArgumentSpec &a = m_.arguments[r.index];
      rank = a.shape.size();
      bf16 = a.dtype == ElementType::BF16;
      if (rank > 0 && a.shape.back() >= 0)
        inner = uint64_t(a.shape.back());
    }
    if (!bf16)
      invalid("{} is a tensor map of a tensor that is not bf16", path);
    if (rank < 1 || rank > cuda::kTensorMapMaxRank)
      invalid("{} is a tensor map of a tensor with {} dimensions (1 to {})",
              path, rank, cuda::kTensorMapMaxRank);
    const json &box = v["box"];
    if (!box.is_array() || box.size() != rank)
      invalid("field '{}.box' must be a list of {} sizes (the tensor's rank)",
              path, rank);
    for (size_t d = 0; d < rank; ++d) {
      uint64_t n = index(box[d], fmt::format("{}.box[{}]", path, d));
      if (n == 0 || n > kMaxBoxDim)
        invalid("field '{}.box[{}]' is {}, outside 1..{}", path, d, n,
                kMaxBoxDim);
      r.box.push_back(uint32_t(n));
    }
    uint64_t innerBytes = uint64_t(r.box.back()) * 2;
    if (innerBytes % 16 != 0 || innerBytes > kSwizzleBytes)
      invalid("{}: boxes of {} bf16 per row; the 128-byte swizzle takes a "
              "multiple of 8, at most 64",
              path, r.box.back());
    if (rank > 1 && inner && (*inner * 2) % 16 != 0)
      invalid("{}: rows of {} bf16 are not a whole number of 16 bytes, "
              "which TMA needs",
              path, *inner);
    return r;
  }

  void dims(const json &step, const std::string &path, const char *key,
            std::array<PlanExpr, 3> &out) {
    auto it = step.find(key);
    if (it == step.end())
      invalid("missing field '{}.{}'", path, key);
    if (!it->is_array() || it->size() != 3)
      invalid("field '{}.{}' must be a list of 3 expressions", path, key);
    for (size_t d = 0; d < 3; ++d)
      out[d] = topExpr((*it)[d], fmt::format("{}.{}[{}]", path, key, d));
  }

  PlanStep step(const json &v, const std::string &path) {
    if (!v.is_object())
      invalid("'{}' must be an object", path);
    PlanStep s;
    s.field = path;
    bool launch = v.contains("launch"), free = v.contains("free");
    if (launch == free)
      invalid("'{}' must have either a 'launch' or a 'free' field", path);
    if (free) {
      uint64_t freed = index(v["free"], path + ".free");
      if (freed >= plan_.buffers.size())
        invalid("{} frees buffer {} of {}", path, freed, plan_.buffers.size());
      s.freed = size_t(freed);
      return s;
    }
    const json &name = v["launch"];
    if (!name.is_string() || name.get_ref<const std::string &>().empty() ||
        name.get_ref<const std::string &>().find('\0') != std::string::npos)
      invalid("field '{}.launch' must be a non-empty kernel name", path);
    s.kernel = name.get<std::string>();
    dims(v, path, "grid", s.grid);
    dims(v, path, "block", s.block);
    auto args = v.find("args");
    if (args == v.end())
      invalid("missing field '{}.args'", path);
    if (!args->is_array())
      invalid("field '{}.args' must be a list", path);
    for (size_t a = 0; a < args->size(); ++a) {
      const json &arg = (*args)[a];
      std::string argPath = fmt::format("{}.args[{}]", path, a);
      s.args.push_back(arg.is_object() && arg.contains("tensor_map")
                           ? tensorMap(arg, argPath)
                           : ref(arg, argPath));
    }
    if (auto shared = v.find("shared_bytes"); shared != v.end()) {
      uint64_t bytes = index(*shared, path + ".shared_bytes");
      if (bytes > kMaxSharedBytes)
        invalid("field '{}.shared_bytes' is {}, more than {}", path, bytes,
                kMaxSharedBytes);
      s.sharedBytes = uint32_t(bytes);
    }

    // Limits that constant dimensions break already.
    uint64_t grid[3], block[3];
    bool gridKnown[3], blockKnown[3];
    for (int d = 0; d < 3; ++d) {
      gridKnown[d] = s.grid[d].constant.has_value();
      grid[d] = s.grid[d].constant.value_or(1);
      blockKnown[d] = s.block[d].constant.has_value();
      block[d] = s.block[d].constant.value_or(1);
    }
    for (const std::string &problem :
         {gridProblem(grid, gridKnown), blockProblem(block, blockKnown)})
      if (!problem.empty())
        invalid("{} ('{}'): {}", path, s.kernel, problem);
    return s;
  }

  void result(const json &v, size_t i, BufferType dtype, size_t rank,
              const char *what) {
    std::string path = fmt::format("cuda.results[{}]", i);
    PlanRef r = ref(v, path);
    if (!r.isBuffer)
      invalid("{} must be {{\"buffer\": n}}, found {}", path, v.dump());
    const PlanBuffer &b = plan_.buffers[r.index];
    if (b.dtype != dtype || b.shape.size() != rank)
      invalid("{} is buffer {}, {} with {} dimension{}; the {} must be {} "
              "with {} dimension{}",
              path, r.index, bufferTypeName(b.dtype), b.shape.size(),
              b.shape.size() == 1 ? "" : "s", what, bufferTypeName(dtype), rank,
              rank == 1 ? "" : "s");
    plan_.results[i] = r;
  }

  const LayerMetadata &m_;
  const std::string &origin_;
  CudaPlan &plan_;
};
} // namespace

std::string_view bufferTypeName(BufferType type) {
  for (const auto &t : kBufferTypes)
    if (t.type == type)
      return t.name;
  return "?";
}

size_t bufferTypeSize(BufferType type) {
  switch (type) {
  case BufferType::F32:
  case BufferType::I32:
    return 4;
  case BufferType::BF16:
  case BufferType::F16:
    return 2;
  case BufferType::I64:
    return 8;
  case BufferType::I8:
    return 1;
  }
  return 1;
}

uint64_t CudaPlan::evaluate(const PlanExpr &expr, uint64_t tokens) const {
  // Depth is bounded by the parser, so recursion is fine.
  struct Evaluator {
    const CudaPlan &plan;
    const PlanExpr &expr;
    uint64_t tokens;
    uint64_t operator()(uint32_t id) const {
      const ExprNode &n = plan.nodes[id];
      using Op = ExprNode::Op;
      if (n.op == Op::Const)
        return n.value;
      if (n.op == Op::Tokens)
        return tokens;
      uint64_t a = (*this)(n.lhs), b = (*this)(n.rhs);
      if (divides(n.op) && b == 0)
        fail(MOERT_ERROR_FORMAT,
             "{}: invalid metadata: '{}' divides by zero for T = {}",
             plan.origin, expr.field, tokens);
      switch (n.op) {
      case Op::AddI:
        return a + b;
      case Op::SubI:
        return a - b;
      case Op::MulI:
        return a * b;
      case Op::DivUI:
        return a / b;
      case Op::CeilDivUI:
        return a / b + (a % b != 0);
      case Op::RemUI:
        return a % b;
      case Op::MinUI:
        return std::min(a, b);
      case Op::MaxUI:
        return std::max(a, b);
      default:
        return 0;
      }
    }
  };
  return Evaluator{*this, expr, tokens}(expr.root);
}

PlanLayout CudaPlan::layout(const LayerMetadata &m, uint64_t tokens) const {
  PlanLayout l;
  l.tokens = tokens;
  bool overflow = false;
  uint64_t inputBytes;
  overflow =
      __builtin_mul_overflow(tokens, uint64_t(m.hiddenSize) * 4, &inputBytes);
  uint64_t cursor = alignUp(inputBytes, overflow);
  if (overflow)
    fail(MOERT_ERROR_INVALID_ARGUMENT,
         "{}: {} tokens overflow the address space", origin, tokens);

  for (size_t i = 0; i < buffers.size(); ++i) {
    const PlanBuffer &b = buffers[i];
    std::vector<int64_t> shape;
    uint64_t bytes = bufferTypeSize(b.dtype);
    for (const PlanExpr &d : b.shape) {
      uint64_t size = evaluate(d, tokens);
      if (size > uint64_t(INT64_MAX))
        fail(MOERT_ERROR_INVALID_ARGUMENT,
             "{}: '{}' is {} for T = {}, beyond the sizes a buffer can have",
             origin, d.field, size, tokens);
      shape.push_back(int64_t(size));
      if (__builtin_mul_overflow(bytes, size, &bytes))
        overflow = true;
    }
    l.offsets.push_back(cursor);
    if (__builtin_add_overflow(cursor, bytes, &cursor))
      overflow = true;
    cursor = alignUp(cursor, overflow);
    if (overflow)
      fail(MOERT_ERROR_INVALID_ARGUMENT,
           "{}: cuda.buffers[{}] {} does not fit in 64-bit memory for T = {}",
           origin, i, formatShape(shape), tokens);
    l.shapes.push_back(std::move(shape));
  }
  l.bytes = cursor;

  const std::vector<int64_t> want[2] = {{int64_t(tokens), m.hiddenSize},
                                        {m.numExperts}};
  for (size_t r = 0; r < 2; ++r) {
    size_t buffer = results[r].index;
    if (l.shapes[buffer] != want[r])
      fail(MOERT_ERROR_FORMAT,
           "{}: invalid metadata: cuda.results[{}] (buffer {}) has shape {} "
           "for T = {}, expected {}",
           origin, r, buffer, formatShape(l.shapes[buffer]), tokens,
           formatShape(want[r]));
  }
  return l;
}

LaunchDims CudaPlan::launchDims(const PlanStep &step, uint64_t tokens) const {
  uint64_t grid[3], block[3];
  const bool known[3] = {true, true, true};
  for (int d = 0; d < 3; ++d) {
    grid[d] = evaluate(step.grid[d], tokens);
    block[d] = evaluate(step.block[d], tokens);
  }
  for (const std::string &problem :
       {gridProblem(grid, known), blockProblem(block, known)})
    if (!problem.empty())
      fail(MOERT_ERROR_INVALID_ARGUMENT, "{}: {} ('{}') for T = {}: {}", origin,
           step.field, step.kernel, tokens, problem);
  LaunchDims dims;
  for (int d = 0; d < 3; ++d) {
    dims.grid[d] = unsigned(grid[d]);
    dims.block[d] = unsigned(block[d]);
  }
  return dims;
}

std::vector<std::string> CudaPlan::kernels() const {
  std::vector<std::string> names;
  for (const PlanStep &s : steps)
    if (s.isLaunch() &&
        std::find(names.begin(), names.end(), s.kernel) == names.end())
      names.push_back(s.kernel);
  return names;
}

std::shared_ptr<const CudaPlan> parseCudaPlan(const json &root,
                                              const LayerMetadata &m,
                                              const std::string &origin) {
  auto plan = std::make_shared<CudaPlan>();
  plan->origin = origin;
  PlanParser(m, origin, *plan).parse(root);
  return plan;
}

} // namespace moert
