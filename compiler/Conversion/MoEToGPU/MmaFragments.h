//===- MmaFragments.h - bf16 m16n8k16 tensor-core fragments -----*- C++ -*-===//
//
// One warp computes a 16 x 8 f32 block C += A (16 x 16) * B (16 x 8) with
// `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32` (SASS HMMA.16816).
// Both operands are read along K, which is how every MoE matmul here lies in
// memory: activation rows [rows, K] (A, row-major) and weight rows [N, K]
// (B^T, row-major = B column-major, what `.col` wants).
//
// Lane l = 4 g + t (g = l / 4, t = l % 4) holds, as bf16 pairs packed in i32:
//   A: a0 = A[g][2t..], a1 = A[g+8][2t..],
//      a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B: b0 = Bt[g][2t..], b1 = Bt[g][2t+8..]
//   C: c0, c1 = C[g][2t], C[g][2t+1];  c2, c3 = C[g+8][2t], C[g+8][2t+1]
// (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type").
//
// nvgpu.mma.sync cannot type bf16 operands in MLIR 22, so the op is
// nvvm.mma.sync on i32-packed pairs.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_CONVERSION_MOETOGPU_MMAFRAGMENTS_H
#define MOE_COMPILER_CONVERSION_MOETOGPU_MMAFRAGMENTS_H

#include "mlir/IR/ImplicitLocOpBuilder.h"

#include <array>

namespace mlir::moe::gpu_mma {

/// The lane's coordinates inside the fragments.
struct Lane {
  Value g; // lane / 4: the row (A, C) or column (B) group
  Value t; // lane % 4: the K (A, B) or column (C) pair
};
Lane laneOf(ImplicitLocOpBuilder &b, Value laneId);

/// Two consecutive elements `memref[indices]`, `memref[indices + 1]` along
/// the last dimension, as a bf16 pair packed in an i32. f32 memrefs are
/// rounded to bf16 (round to nearest even); bf16 ones are read as they are.
Value loadPair(ImplicitLocOpBuilder &b, Value memref, ValueRange indices);

/// The accumulator of one 16 x 8 block: c0..c3.
using Accumulator = std::array<Value, 4>;
Accumulator zeroAccumulator(ImplicitLocOpBuilder &b);

/// C + A * B for one m16n8k16 step.
Accumulator mma(ImplicitLocOpBuilder &b, const std::array<Value, 4> &a,
                const std::array<Value, 2> &bFragment, const Accumulator &c);

} // namespace mlir::moe::gpu_mma

#endif // MOE_COMPILER_CONVERSION_MOETOGPU_MMAFRAGMENTS_H
