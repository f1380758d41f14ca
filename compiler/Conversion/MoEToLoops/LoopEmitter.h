//===- LoopEmitter.h - Building loop nests over memrefs ---------*- C++ -*-===//
//
// A thin layer over ImplicitLocOpBuilder that keeps the lowering patterns
// close to the pseudo-code in the ops' descriptions: counted loops, carried
// reductions, conditionals, loads that widen to f32, and buffer plumbing
// between the tensor world and memrefs.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_CONVERSION_MOETOLOOPS_LOOPEMITTER_H
#define MOE_COMPILER_CONVERSION_MOETOLOOPS_LOOPEMITTER_H

#include "dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"
#include "mlir/IR/PatternMatch.h"

namespace mlir::moe {

class LoopEmitter {
public:
  /// Emits at `builder`'s insertion point (a PatternRewriter in the
  /// lowering patterns; any builder when filling a fresh kernel body).
  LoopEmitter(OpBuilder &builder, Location loc);

  ImplicitLocOpBuilder &builder() { return b; }
  Type f32() { return b.getF32Type(); }

  // Constants.
  Value index(int64_t v);
  Value f32(double v);
  Value i32(int64_t v);
  Value i64(int64_t v);
  /// An f32 constant shaped like `like`: a scalar, or a splat vector.
  Value f32Like(Value like, double v);
  /// An i32 constant shaped like `like` (a scalar, or a splat vector).
  Value i32Like(Value like, uint32_t v);

  // Arithmetic helpers; `fast` marks dot-product arithmetic that LLVM may
  // reassociate and contract into FMAs.
  Value add(Value a, Value c, bool fast = false);
  Value mul(Value a, Value c, bool fast = false);
  Value fma(Value a, Value c, Value acc) { return add(acc, mul(a, c, true), true); }

  // Buffers.
  /// The memref view of a tensor operand (identity layout).
  Value toBuffer(Value tensor);
  /// A fresh buffer for a tensor result; `dynamicSizes` fill its `?` dims.
  Value alloc(RankedTensorType type, ValueRange dynamicSizes = {});
  Value alloc(MemRefType type, ValueRange dynamicSizes = {});
  /// Wraps a filled buffer as the op's tensor result.
  Value toTensor(Value buffer, Type tensorType);
  /// Stack scratch for the lowering's own use. Emitted outside any loop, it
  /// is freed on return; buffer deallocation only manages heap buffers.
  Value scratch(MemRefType type, ValueRange dynamicSizes = {});
  void fill(Value buffer, Value value);
  Value dim(Value memref, unsigned d);

  // Memory access. `load` widens bf16/f16 to f32; `store` narrows f32 to the
  // buffer's element type.
  Value load(Value memref, ValueRange indices);
  void store(Value value, Value memref, ValueRange indices);
  /// Stores `value` (f32 scalar or vector) rounded to bf16 (nearest, ties
  /// to even; NaN stays NaN): into a bf16 buffer as its 16 bits, into an
  /// f32 buffer as the rounded f32. Integer arithmetic, so the rounding is
  /// the same on every CPU and needs no bf16 instructions or library calls.
  void storeRoundedToBF16(Value value, Value memref, ValueRange indices);
  Value toIndex(Value integer);
  Value fromIndex(Value index, Type integerType);

  // Control flow.
  /// for (i = lb; i < ub; ++i) body(i)
  void forEach(Value lb, Value ub, function_ref<void(Value)> body);
  void forEach(int64_t lb, Value ub, function_ref<void(Value)> body) {
    forEach(index(lb), ub, body);
  }
  /// An scf.parallel loop: iterations that touch disjoint memory and may run
  /// on different threads (see convert-scf-to-openmp).
  void parallelForEach(Value lb, Value ub, function_ref<void(Value)> body);
  /// A loop carrying values: returns the final `carried`.
  SmallVector<Value> reduce(Value lb, Value ub, ValueRange init,
                            function_ref<SmallVector<Value>(Value, ValueRange)> body);
  /// Sum over i in [lb, ub) of term(i), as f32, in increasing i.
  Value sum(Value lb, Value ub, function_ref<Value(Value)> term, bool fast);
  void ifThen(Value cond, function_ref<void()> then);
  void ifThenElse(Value cond, function_ref<void()> then,
                  function_ref<void()> otherwise);

  // Math on f32 scalars.
  Value exp(Value x);
  Value sigmoid(Value x);
  /// An expert's activation on an f32 scalar or vector (CPU and GPU alike).
  Value activation(Activation kind, Value x);

private:
  ImplicitLocOpBuilder b;
};

} // namespace mlir::moe

#endif // MOE_COMPILER_CONVERSION_MOETOLOOPS_LOOPEMITTER_H
