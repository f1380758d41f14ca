//===- Dispatch.cpp - moe.dispatch to loops -------------------------------===//
//
// A stable counting sort of the token slots by expert: count, pad each
// expert's count to the tile height and scan, then place the slots in token
// order. Sequential: it touches tokens * k integers, far below the FFN's cost.
//
//===----------------------------------------------------------------------===//

#include "compiler/Conversion/MoEToLoops/Emitters.h"
#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"
#include "compiler/Conversion/MoEToLoops/PopulatePatterns.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace mlir::moe;

void mlir::moe::emitDispatch(
    LoopEmitter &em, DispatchOp op, Value indices, Value offsets,
    function_ref<DispatchPlan(Value rows, Value tiles)> allocate) {
  auto &b = em.builder();
  Type i32 = b.getI32Type();
  Value tokens = em.dim(indices, 0);
  Value k = em.dim(indices, 1);
  int64_t numExperts = op.getNumExperts();
  Value experts = em.index(numExperts);
  Value tile = em.i32(op.getTileRows());

  // expert_offsets[e + 1] = expert_offsets[e] + roundup(count[e], tile).
  em.fill(offsets, em.i32(0));
  auto forEachRoutedSlot = [&](function_ref<void(Value, Value, Value)> body) {
    em.forEach(0, tokens, [&](Value t) {
      em.forEach(0, k, [&](Value j) {
        Value e = em.load(indices, {t, j});
        Value routed =
            arith::CmpIOp::create(b, arith::CmpIPredicate::sge, e, em.i32(0));
        em.ifThenElse(
            routed, [&] { body(t, j, em.toIndex(e)); },
            [&] { body(t, j, Value()); });
      });
    });
  };
  forEachRoutedSlot([&](Value, Value, Value e) {
    if (!e)
      return;
    Value next = arith::AddIOp::create(b, e, em.index(1));
    em.store(arith::AddIOp::create(b, em.load(offsets, {next}), em.i32(1)),
             offsets, {next});
  });
  Value one = em.i32(1);
  em.forEach(0, experts, [&](Value e) {
    Value next = arith::AddIOp::create(b, e, em.index(1));
    Value count = em.load(offsets, {next});
    Value tiles = arith::DivUIOp::create(
        b, arith::AddIOp::create(b, count, arith::SubIOp::create(b, tile, one)),
        tile);
    Value padded = arith::MulIOp::create(b, tiles, tile);
    em.store(arith::AddIOp::create(b, em.load(offsets, {e}), padded), offsets,
             {next});
  });
  Value rows = em.toIndex(em.load(offsets, {experts}));
  Value numTiles = arith::DivUIOp::create(b, rows, em.index(op.getTileRows()));

  DispatchPlan plan = allocate(rows, numTiles);
  em.fill(plan.sortedSlots, em.i32(-1));
  em.fill(plan.tileExperts, em.i32(0));

  Value tileIndex = em.index(op.getTileRows());
  em.forEach(0, experts, [&](Value e) {
    Value next = arith::AddIOp::create(b, e, em.index(1));
    Value first = arith::DivUIOp::create(
        b, em.toIndex(em.load(offsets, {e})), tileIndex);
    Value last = arith::DivUIOp::create(
        b, em.toIndex(em.load(offsets, {next})), tileIndex);
    em.forEach(first, last, [&](Value i) {
      em.store(em.fromIndex(e, i32), plan.tileExperts, {i});
    });
  });

  // Place the slots, in token order within each expert (stable).
  Value cursor = em.scratch(MemRefType::get({numExperts}, i32));
  em.forEach(0, experts, [&](Value e) {
    em.store(em.load(offsets, {e}), cursor, {e});
  });
  forEachRoutedSlot([&](Value t, Value j, Value e) {
    if (!e) {
      em.store(em.i32(-1), plan.slotRows, {t, j});
      return;
    }
    Value row = em.load(cursor, {e});
    Value slot = arith::AddIOp::create(b, arith::MulIOp::create(b, t, k), j);
    em.store(em.fromIndex(slot, i32), plan.sortedSlots, {em.toIndex(row)});
    em.store(row, plan.slotRows, {t, j});
    em.store(arith::AddIOp::create(b, row, one), cursor, {e});
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
    Value offsets = em.alloc(offsetsType);
    DispatchPlan plan;
    emitDispatch(em, op, indices, offsets, [&](Value rows, Value tiles) {
      plan.sortedSlots = em.alloc(slotsType, {rows});
      plan.tileExperts = em.alloc(tilesType, {tiles});
      plan.slotRows =
          em.alloc(slotRowsType, leadingDynamicSize(slotRowsType, tokens));
      return plan;
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
