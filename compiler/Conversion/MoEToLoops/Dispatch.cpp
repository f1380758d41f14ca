//===- Dispatch.cpp - moe.dispatch to loops -------------------------------===//
//
// A stable counting sort of the token slots by expert, in phases a GPU runs
// in parallel (histograms of slot chunks, ranks per expert, padded offsets,
// the tile table, the scatter per chunk; Emitters.h). Here they run one
// after the other: they touch tokens * k integers, far below the FFN's cost.
//
//===----------------------------------------------------------------------===//

#include "compiler/Conversion/MoEToLoops/Emitters.h"
#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"
#include "compiler/Conversion/MoEToLoops/PopulatePatterns.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace mlir::moe;

Value mlir::moe::emitSlotChunks(LoopEmitter &em, Value indices) {
  auto &b = em.builder();
  Value slots = arith::MulIOp::create(b, em.dim(indices, 0), em.dim(indices, 1));
  return arith::CeilDivUIOp::create(b, slots, em.index(kSlotChunk));
}

/// body(t, j, e) for the slots of chunk c in order; e is the slot's expert
/// as an index, null for a dropped slot.
static void forEachSlotOfChunk(LoopEmitter &em, Value indices, Value c,
                               function_ref<void(Value, Value, Value)> body) {
  auto &b = em.builder();
  Value k = em.dim(indices, 1);
  Value slots = arith::MulIOp::create(b, em.dim(indices, 0), k);
  Value first = arith::MulIOp::create(b, c, em.index(kSlotChunk));
  Value last = arith::MinUIOp::create(
      b, arith::AddIOp::create(b, first, em.index(kSlotChunk)), slots);
  em.forEach(first, last, [&](Value s) {
    Value t = arith::DivUIOp::create(b, s, k);
    Value j = arith::RemUIOp::create(b, s, k);
    Value e = em.load(indices, {t, j});
    Value routed =
        arith::CmpIOp::create(b, arith::CmpIPredicate::sge, e, em.i32(0));
    em.ifThenElse(
        routed, [&] { body(t, j, em.toIndex(e)); },
        [&] { body(t, j, Value()); });
  });
}

void mlir::moe::emitChunkHistogram(LoopEmitter &em, Value indices,
                                   Value chunkCounts, Value c) {
  auto &b = em.builder();
  em.forEach(0, em.dim(chunkCounts, 1),
             [&](Value e) { em.store(em.i32(0), chunkCounts, {c, e}); });
  forEachSlotOfChunk(em, indices, c, [&](Value, Value, Value e) {
    if (!e)
      return;
    Value count = em.load(chunkCounts, {c, e});
    em.store(arith::AddIOp::create(b, count, em.i32(1)), chunkCounts, {c, e});
  });
}

MemRefType mlir::moe::chunkCountsType(MLIRContext *context,
                                      int64_t numExperts) {
  return MemRefType::get({ShapedType::kDynamic, numExperts},
                         IntegerType::get(context, 32));
}

ChunkHistograms mlir::moe::emitChunkHistograms(LoopEmitter &em,
                                               Value indices,
                                               int64_t numExperts) {
  Value chunks = emitSlotChunks(em, indices);
  Value chunkCounts = em.alloc(
      chunkCountsType(em.builder().getContext(), numExperts), {chunks});
  em.forEach(0, chunks, [&](Value c) {
    emitChunkHistogram(em, indices, chunkCounts, c);
  });
  return {chunkCounts, chunks};
}

Value mlir::moe::emitChunkRanks(LoopEmitter &em, Value chunkCounts, Value e) {
  auto &b = em.builder();
  return em.reduce(em.index(0), em.dim(chunkCounts, 0), {em.i32(0)},
                   [&](Value c, ValueRange before) -> SmallVector<Value> {
                     Value count = em.load(chunkCounts, {c, e});
                     em.store(before[0], chunkCounts, {c, e});
                     return {arith::AddIOp::create(b, before[0], count)};
                   })[0];
}

void mlir::moe::emitPaddedOffsets(LoopEmitter &em, Value offsets, int64_t tile) {
  auto &b = em.builder();
  Value experts = arith::SubIOp::create(b, em.dim(offsets, 0), em.index(1));
  Value tileRows = em.i32(tile), one = em.i32(1);
  em.store(em.i32(0), offsets, {em.index(0)});
  // offsets[e + 1] = offsets[e] + roundup(count[e], tile).
  em.forEach(0, experts, [&](Value e) {
    Value next = arith::AddIOp::create(b, e, em.index(1));
    Value count = em.load(offsets, {next});
    Value tiles = arith::DivUIOp::create(
        b, arith::AddIOp::create(b, count, arith::SubIOp::create(b, tileRows, one)),
        tileRows);
    Value padded = arith::MulIOp::create(b, tiles, tileRows);
    em.store(arith::AddIOp::create(b, em.load(offsets, {e}), padded), offsets,
             {next});
  });
}

void mlir::moe::emitExpertTiles(LoopEmitter &em, Value offsets,
                                Value tileExperts, Value e, int64_t tile) {
  auto &b = em.builder();
  Value next = arith::AddIOp::create(b, e, em.index(1));
  Value tileIndex = em.index(tile);
  Value first =
      arith::DivUIOp::create(b, em.toIndex(em.load(offsets, {e})), tileIndex);
  Value last =
      arith::DivUIOp::create(b, em.toIndex(em.load(offsets, {next})), tileIndex);
  Value expert = em.fromIndex(e, b.getI32Type());
  em.forEach(first, last,
             [&](Value i) { em.store(expert, tileExperts, {i}); });
}

void mlir::moe::emitChunkCapacity(LoopEmitter &em, Value indices,
                                  Value weights, Value chunkCounts, Value c,
                                  int64_t capacity) {
  auto &b = em.builder();
  forEachSlotOfChunk(em, indices, c, [&](Value t, Value j, Value e) {
    if (!e)
      return;
    Value rank = em.load(chunkCounts, {c, e});
    em.store(arith::AddIOp::create(b, rank, em.i32(1)), chunkCounts, {c, e});
    Value full = arith::CmpIOp::create(b, arith::CmpIPredicate::sge, rank,
                                       em.i32(capacity));
    em.ifThen(full, [&] {
      em.store(em.i32(-1), indices, {t, j});
      em.store(em.f32(0.0), weights, {t, j});
    });
  });
}

void mlir::moe::emitChunkScatter(LoopEmitter &em, Value indices,
                                 Value chunkCounts, Value offsets,
                                 const DispatchPlan &plan, Value c) {
  auto &b = em.builder();
  Value k = em.dim(indices, 1);
  Type i32 = b.getI32Type();
  forEachSlotOfChunk(em, indices, c, [&](Value t, Value j, Value e) {
    if (!e) {
      em.store(em.i32(-1), plan.slotRows, {t, j});
      return;
    }
    Value rank = em.load(chunkCounts, {c, e});
    Value row = arith::AddIOp::create(b, em.load(offsets, {e}), rank);
    Value slot = arith::AddIOp::create(b, arith::MulIOp::create(b, t, k), j);
    em.store(em.fromIndex(slot, i32), plan.sortedSlots, {em.toIndex(row)});
    em.store(row, plan.slotRows, {t, j});
    em.store(arith::AddIOp::create(b, rank, em.i32(1)), chunkCounts, {c, e});
  });
}

namespace {
struct DispatchToLoops : OpRewritePattern<DispatchOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(DispatchOp op,
                                PatternRewriter &rewriter) const override {
    LoopEmitter em(rewriter, op.getLoc());
    Value indices = em.toBuffer(op.getIndices());
    Value tokens = em.dim(indices, 0);
    auto offsetsType = op.getExpertOffsets().getType();
    auto slotsType = op.getSortedSlots().getType();
    auto tilesType = op.getTileExperts().getType();
    auto slotRowsType = op.getSlotRows().getType();
    int64_t numExperts = op.getNumExperts(), tile = op.getTileRows();
    auto &b = em.builder();
    // The phases of Emitters.h, one after the other: histogram per chunk,
    // ranks per expert, padded offsets, tile table, scatter per chunk.
    ChunkHistograms histograms = emitChunkHistograms(em, indices, numExperts);
    Value chunkCounts = histograms.counts, chunks = histograms.chunks;
    Value offsets = em.alloc(offsetsType);
    em.forEach(0, em.index(numExperts), [&](Value e) {
      Value total = emitChunkRanks(em, chunkCounts, e);
      em.store(total, offsets, {arith::AddIOp::create(b, e, em.index(1))});
    });
    emitPaddedOffsets(em, offsets, tile);
    Value rows = em.toIndex(em.load(offsets, {em.index(numExperts)}));
    DispatchPlan plan;
    plan.sortedSlots = em.alloc(slotsType, {rows});
    plan.tileExperts = em.alloc(
        tilesType, {arith::DivUIOp::create(b, rows, em.index(tile))});
    plan.slotRows =
        em.alloc(slotRowsType, leadingDynamicSize(slotRowsType, tokens));
    em.fill(plan.sortedSlots, em.i32(-1));
    em.forEach(0, em.index(numExperts), [&](Value e) {
      emitExpertTiles(em, offsets, plan.tileExperts, e, tile);
    });
    em.forEach(0, chunks, [&](Value c) {
      emitChunkScatter(em, indices, chunkCounts, offsets, plan, c);
    });
    rewriter.replaceOp(op, {em.toTensor(plan.sortedSlots, slotsType),
                            em.toTensor(plan.slotRows, slotRowsType),
                            em.toTensor(offsets, offsetsType),
                            em.toTensor(plan.tileExperts, tilesType)});
    return success();
  }
};
} // namespace

void mlir::moe::populateDispatchToLoopsPatterns(RewritePatternSet &patterns) {
  patterns.add<DispatchToLoops>(patterns.getContext());
}
