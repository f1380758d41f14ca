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

#include "mlir/IR/PatternMatch.h"

namespace mlir::moe {

/// scores[scoreRow, :] = softmax(logits[t, :]) over `experts`
/// (max-subtracted).
void emitSoftmaxRow(LoopEmitter &em, Value logits, Value t, Value scores,
                    Value scoreRow, Value experts);
inline void emitSoftmaxRow(LoopEmitter &em, Value logits, Value scores,
                           Value t, Value experts) {
  emitSoftmaxRow(em, logits, t, scores, t, experts);
}

/// One token's selection scratch (selection scores, taken flags, and the
/// group scores and flags for group-limited selection).
struct SelectionScratch {
  Value sel, taken, groupScore, groupTaken;
};
SelectionScratch allocSelectionScratch(LoopEmitter &em, TopKOp op);

/// The moe.topk that is the only reader of `router`'s results (its scores;
/// the logits unused), with its selection bias defined before the router:
/// what the fused routing lowerings (CPU and GPU) take in one rewrite
/// rooted at the router. Otherwise null, with the reason on `rewriter`.
TopKOp matchFusedRouting(RouterOp router, RewriterBase &rewriter);

/// moe.topk for one token: from its scores (row `scoreRow` of `scores`),
/// weights[outRow, :] and indices[outRow, :] (docs/dialect.md, "Selection"),
/// without capacity.
void emitTopKRow(LoopEmitter &em, TopKOp op, const SelectionScratch &scratch,
                 Value scores, Value scoreRow, Value bias, Value weights,
                 Value indices, Value outRow);

/// moe.topk's capacity: the slots in token order, each expert keeping its
/// first `capacity` (the others get index -1, weight 0). The phases below
/// (histogram, ranks, emitChunkCapacity), one after the other.
void emitCapacity(LoopEmitter &em, TopKOp op, Value weights, Value indices);

/// counts[e] = the slots of `indices` routed to e (-1 skipped). Sequential.
void emitCounts(LoopEmitter &em, Value indices, Value counts);

/// The buffers of a dispatch plan.
struct DispatchPlan {
  Value sortedSlots, slotRows, tileExperts;
};
/// moe.dispatch as a stable counting sort in phases that each run over
/// slot chunks or over experts, independently, so a target may run them in
/// a loop or one thread per chunk or expert. Slots are taken token-major in
/// chunks of kSlotChunk; `chunkCounts` ([chunks, E] i32 scratch) carries
/// the phases. In order:
///   1. emitChunkHistogram, every chunk c;
///   2. emitChunkRanks, every expert e, storing its total in offsets[e + 1];
///   3. emitPaddedOffsets (sequential, over the experts);
///   4. the plan's buffers: sortedSlots filled with -1 (rows past
///      offsets[E] are padding), tileExperts with 0 where buffers are
///      larger than offsets[E] / tile; then emitExpertTiles, every expert;
///   5. emitChunkScatter, every chunk.
/// The result does not depend on the chunking (token order within each
/// expert), so CPU and GPU plans are identical.
constexpr int64_t kSlotChunk = 256;
/// ceil(T k / kSlotChunk) for `indices` [T, k].
Value emitSlotChunks(LoopEmitter &em, Value indices);
/// The type of chunkCounts: [chunks, E] i32.
MemRefType chunkCountsType(MLIRContext *context, int64_t numExperts);
/// Phase 1 in a loop: a fresh chunkCounts for `indices`, filled by
/// emitChunkHistogram for every chunk, and the number of chunks.
struct ChunkHistograms {
  Value counts, chunks;
};
ChunkHistograms emitChunkHistograms(LoopEmitter &em, Value indices,
                                    int64_t numExperts);
/// chunkCounts[c, :] = the slots of chunk c routed to each expert.
void emitChunkHistogram(LoopEmitter &em, Value indices, Value chunkCounts,
                        Value c);
/// chunkCounts[:, e] becomes its exclusive prefix sum over the chunks (the
/// rank among e's slots of chunk c's first); returns e's total (i32).
Value emitChunkRanks(LoopEmitter &em, Value chunkCounts, Value e);
/// With offsets[e + 1] = count[e]: offsets[0] = 0, offsets[e + 1] =
/// offsets[e] + roundup(count[e], tile).
void emitPaddedOffsets(LoopEmitter &em, Value offsets, int64_t tile);
/// tileExperts[i] = e for expert e's tiles.
void emitExpertTiles(LoopEmitter &em, Value offsets, Value tileExperts,
                     Value e, int64_t tile);
/// The capacity as a phase after emitChunkHistogram and emitChunkRanks:
/// a slot of chunk c whose rank among its expert's slots is `capacity` or
/// more is dropped (index -1, weight 0); chunkCounts[c, :] serves as its
/// cursors.
void emitChunkCapacity(LoopEmitter &em, Value indices, Value weights,
                       Value chunkCounts, Value c, int64_t capacity);
/// Places chunk c's slots: sortedSlots[row] = slot, slotRows[t, j] = row
/// (-1 for a dropped slot); chunkCounts[c, :] serves as its cursors.
void emitChunkScatter(LoopEmitter &em, Value indices, Value chunkCounts,
                      Value offsets, const DispatchPlan &plan, Value c);

/// moe.combine for one element: addend[t, h] (or 0) + rows[r_j, h] over the
/// routed slots j of token t in choice order, the additions in the order
/// emitCombineToken makes them (so the same bits).
Value emitCombineElement(LoopEmitter &em, Value rows, Value slotRows,
                         Value addend, Value t, Value h);

/// moe.combine for token t: out[t] = addend[t] (or 0) + the rows of its
/// slots, in choice order.
void emitCombineToken(LoopEmitter &em, Value rows, Value slotRows,
                      Value addend, Value out, Value t);

} // namespace mlir::moe

#endif // MOE_COMPILER_CONVERSION_MOETOLOOPS_EMITTERS_H
