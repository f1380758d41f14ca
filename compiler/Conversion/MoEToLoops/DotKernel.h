//===- DotKernel.h - Register-blocked, vectorised dot products --*- C++ -*-===//
//
// Every matmul of an MoE block here has the shape "rows of activations times
// rows of a PyTorch [out, in] weight": out[m, n] = sum_k a_m[k] * w_n[k],
// both operands contiguous along k. The kernel keeps a block of MR x NR
// vector accumulators in registers, loads MR activation vectors and NR
// weight vectors per step of `vectorWidth` along k (vector.load, widened to
// f32 for bf16/f16 weights), and reduces each accumulator once at the end.
// Output blocks are the outer loop, so a block of weight rows stays in cache
// while all activation rows stream past it; a single remaining row runs the
// same kernel with MR = 1, which is also the few-tokens (weight streaming)
// regime.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_CONVERSION_MOETOLOOPS_DOTKERNEL_H
#define MOE_COMPILER_CONVERSION_MOETOLOOPS_DOTKERNEL_H

#include "compiler/Conversion/BF16Dot.h"
#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"

namespace mlir::moe {

/// Where one contiguous operand row lives: element k is
/// `memref[prefix..., k]`.
struct RowRef {
  Value memref;
  SmallVector<Value> prefix;
};

/// The register blocking of one kernel.
struct DotSchedule {
  int64_t vectorWidth = 8; // f32 lanes per vector register
  int64_t rowBlock = 6;    // MR: activation rows per block
  int64_t colBlock = 2;    // NR: weight rows (or panel vectors) per block
  /// Tiles with at most this many rows run the streaming kernel: one row
  /// at a time against wide panel blocks, each weight read once (the
  /// few-tokens, bandwidth-bound regime).
  int64_t streamingRows = 2;
  /// MR over pair-packed bf16 panels: each panel vector is widened into
  /// two, so fewer rows fit the register file (AVX2: 4).
  int64_t pairRowBlock = 4;
  /// bf16 dot products (vdpbf16ps, or its emulation): a target property,
  /// not a tuning choice, so it is not part of #moe.cpu_schedule.
  BF16Dot bf16Dot = BF16Dot::none;
};

/// `dots[m][n] = sum_{k < depth} rows[m][k] * cols[n][k]`.
/// The sums run over k in [kStart, kStart + depth).
SmallVector<SmallVector<Value>> emitDotBlock(LoopEmitter &em,
                                             ArrayRef<RowRef> rows,
                                             ArrayRef<RowRef> cols,
                                             Value kStart, int64_t depth,
                                             const DotSchedule &schedule);

/// Drives emitDotBlock over `numRows` (dynamic) activation rows and
/// `numOutputs` (static) outputs, each output needing the dot products with
/// `weightsPerOutput` weight rows (2 for a GLU's gate and up). `epilogue`
/// receives the row, the output and its dot products.
void emitBlockedDots(
    LoopEmitter &em, Value numRows, int64_t numOutputs,
    int64_t weightsPerOutput, int64_t depth, const DotSchedule &schedule,
    function_ref<RowRef(Value row)> activationRow,
    function_ref<SmallVector<RowRef>(Value output)> weightRows,
    function_ref<void(Value row, Value output, ArrayRef<Value> dots)>
        epilogue);

/// The packed-panel kernels: a weight `[out, in]` packed as panels
/// `[ceil(out / P), in, P]` (P = the vector width, zero-padded) is read one
/// vector per k, and each activation element is broadcast: MR x NC vector
/// accumulators of outputs, no horizontal reductions. `panelRefs(p)` gives
/// the panels of output block `p` (one per matrix, e.g. gate and up);
/// element (k, lane) of a panel is `memref[prefix..., k, lane]`, or with
/// `kPack = 2` (bf16 pairs, `depth` even) `memref[prefix..., k / 2,
/// 2 lane + k % 2]`, multiplied with vdpbf16ps when the activation rows
/// are bf16. `epilogue(row, p, vectors)` receives one accumulator per
/// matrix.
void emitPanelDots(
    LoopEmitter &em, Value numRows, int64_t numPanels,
    int64_t matricesPerPanel, int64_t depth, int64_t kPack,
    const DotSchedule &schedule,
    function_ref<RowRef(Value row)> activationRow,
    function_ref<SmallVector<RowRef>(Value panel)> panelRefs,
    function_ref<void(Value row, Value panel, ArrayRef<Value> vectors)>
        epilogue);

} // namespace mlir::moe

#endif // MOE_COMPILER_CONVERSION_MOETOLOOPS_DOTKERNEL_H
