//===- cuda_plan.h - A cuda layer's launch plan (docs/abi.md) --*- C++ -*-===//
//
// The "cuda" object of a cuda layer's metadata: device buffers sized by
// index arithmetic on the token count T, kernel launches and frees in
// order, and the buffers holding the results. parseCudaPlan checks every
// field when the layer is opened (no GPU needed); the executor
// (cuda_layer.h) evaluates the plan for each call's T.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_CUDA_PLAN_H
#define MOERT_SRC_CUDA_PLAN_H

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moert {

struct LayerMetadata;

/// CUDA's launch limits, checked for every launch.
constexpr uint64_t kMaxGridX = (uint64_t(1) << 31) - 1;
constexpr uint64_t kMaxGridYZ = 65535;
constexpr uint64_t kMaxBlockThreads = 1024;
constexpr uint64_t kMaxBlockZ = 64;
/// The most dynamic shared memory a step may ask for (any current GPU
/// allows less; the device's own limit is checked when the layer opens it).
constexpr uint64_t kMaxSharedBytes = 1 << 20;
/// Largest box dimension of a tensor map, and bytes of its innermost row
/// with the 128-byte swizzle.
constexpr uint64_t kMaxBoxDim = 256;
constexpr uint64_t kSwizzleBytes = 128;
/// Every plan buffer (and x) starts on this boundary of the layer's arena.
constexpr uint64_t kPlanBufferAlignment = 256;

/// The element types of plan buffers.
enum class BufferType { F32, BF16, F16, I32, I64, I8 };
std::string_view bufferTypeName(BufferType type);
size_t bufferTypeSize(BufferType type);

/// One node of an expression tree over T, in unsigned 64-bit arithmetic.
struct ExprNode {
  enum class Op : uint8_t {
    Const,
    Tokens,
    AddI,
    SubI,
    MulI,
    DivUI,
    CeilDivUI,
    RemUI,
    MinUI,
    MaxUI
  };
  Op op = Op::Const;
  uint64_t value = 0;        // Const
  uint32_t lhs = 0, rhs = 0; // operands (indices into CudaPlan::nodes)
};

/// One expression of the plan: its root node and the field it came from.
struct PlanExpr {
  uint32_t root = 0;
  std::string field;                // "cuda.steps[3].grid[0]"
  std::optional<uint64_t> constant; // its value when it does not use T
};

/// {"arg": i} (the input or a weight) or {"buffer": n}; as a launch
/// argument also {"tensor_map": <ref>, "box": [...]}: the TMA tensor map of
/// that bf16 tensor (row-major, 128-byte swizzled boxes of `box` elements,
/// outermost first; zeros outside), passed by value.
struct PlanRef {
  bool isBuffer = false;
  size_t index = 0;
  bool isTensorMap = false;
  std::vector<uint32_t> box;
};

struct PlanBuffer {
  BufferType dtype = BufferType::F32;
  std::vector<PlanExpr> shape;
};

struct PlanStep {
  std::string field;  // "cuda.steps[3]"
  std::string kernel; // empty for a free step
  size_t freed = 0;   // free steps: the buffer
  std::array<PlanExpr, 3> grid, block;
  std::vector<PlanRef> args;
  uint32_t sharedBytes = 0; // dynamic shared memory ("shared_bytes")
  bool isLaunch() const { return !kernel.empty(); }
};

/// Where the buffers of one call live in the layer's device arena.
struct PlanLayout {
  uint64_t tokens = 0;
  uint64_t inputOffset = 0;                 // x [T, hidden] f32
  std::vector<uint64_t> offsets;            // per buffer
  std::vector<std::vector<int64_t>> shapes; // per buffer
  uint64_t bytes = 0;                       // the whole arena
};

/// A launch's grid and block for one T, within CUDA's limits.
struct LaunchDims {
  unsigned grid[3], block[3];
};

struct CudaPlan {
  std::string origin; // the layer's path, for messages
  std::string arch;   // "sm_90a"
  std::vector<ExprNode> nodes;
  std::vector<PlanBuffer> buffers;
  std::vector<PlanStep> steps;
  std::array<PlanRef, 2> results; // the output, then the statistics

  /// The expression's value for `tokens`; dividing by zero is a format
  /// error naming its field.
  uint64_t evaluate(const PlanExpr &expr, uint64_t tokens) const;

  /// Sizes and arena offsets of x and every buffer for `tokens` (> 0);
  /// checks that the results have the shapes of the output and the
  /// statistics. Sizes beyond 64 bits are MOERT_ERROR_INVALID_ARGUMENT.
  PlanLayout layout(const LayerMetadata &m, uint64_t tokens) const;

  /// Step `step`'s grid and block for `tokens`; outside CUDA's limits is
  /// MOERT_ERROR_INVALID_ARGUMENT naming the step.
  LaunchDims launchDims(const PlanStep &step, uint64_t tokens) const;

  /// The kernels the steps launch, each once, in order of first launch.
  std::vector<std::string> kernels() const;
};

/// Parses and checks `root["cuda"]` of a cuda layer's metadata, whose other
/// fields `m` already holds. Errors (MOERT_ERROR_FORMAT) start with
/// "<origin>: invalid metadata: " and name the field.
std::shared_ptr<const CudaPlan> parseCudaPlan(const nlohmann::json &root,
                                              const LayerMetadata &m,
                                              const std::string &origin);

} // namespace moert

#endif // MOERT_SRC_CUDA_PLAN_H
