//===- Emitters.h - Per-op code shared by CPU and GPU ----------*- C++ -*-===//
//
// The semantics of the routing, dispatch and combine primitives, emitted
// once: the CPU patterns call these inside their token loops, the GPU
// patterns inside kernels (one thread per token, or one thread for the
// order-dependent parts). All buffers are memrefs the caller allocated.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_CONVERSION_MOETOLOOPS_EMITTERS_H
#define MOE_COMPILER_CONVERSION_MOETOLOOPS_EMITTERS_H

#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"

namespace mlir::moe {

/// scores[t, :] = softmax(logits[t, :]) over `experts` (max-subtracted).
void emitSoftmaxRow(LoopEmitter &em, Value logits, Value scores, Value t,
                    Value experts);

/// One token's selection scratch (selection scores, taken flags, and the
/// group scores and flags for group-limited selection).
struct SelectionScratch {
  Value sel, taken, groupScore, groupTaken;
};
SelectionScratch allocSelectionScratch(LoopEmitter &em, TopKOp op);

/// moe.topk for one token: from its scores (row `scoreRow` of `scores`),
/// weights[outRow, :] and indices[outRow, :] (docs/dialect.md, "Selection"),
/// without capacity.
void emitTopKRow(LoopEmitter &em, TopKOp op, const SelectionScratch &scratch,
                 Value scores, Value scoreRow, Value bias, Value weights,
                 Value indices, Value outRow);

/// moe.topk's capacity: the slots in token order, each expert keeping its
/// first `capacity` (the others get index -1, weight 0). Sequential.
void emitCapacity(LoopEmitter &em, TopKOp op, Value weights, Value indices,
                  Value tokens);

/// counts[e] = the slots of `indices` routed to e (-1 skipped). Sequential.
void emitCounts(LoopEmitter &em, Value indices, Value counts);

/// The buffers of a dispatch plan, given its row and tile counts.
struct DispatchPlan {
  Value sortedSlots, slotRows, tileExperts;
};
/// moe.dispatch: fills `offsets` ([experts + 1]), then asks `allocate` for
/// the plan's buffers (`rows`, `tiles`: index values) and fills them.
/// `allocate` may return larger buffers: rows past `rows` are then padding
/// (slot -1) and tiles past `tiles` expert 0. Sequential.
void emitDispatch(LoopEmitter &em, DispatchOp op, Value indices, Value offsets,
                  function_ref<DispatchPlan(Value rows, Value tiles)> allocate);

/// moe.combine for token t: out[t] = addend[t] (or 0) + the rows of its
/// slots, in choice order.
void emitCombineToken(LoopEmitter &em, Value rows, Value slotRows,
                      Value addend, Value out, Value t);

} // namespace mlir::moe

#endif // MOE_COMPILER_CONVERSION_MOETOLOOPS_EMITTERS_H
