//===- Combine.cpp - moe.combine to loops ---------------------------------===//

#include "compiler/Conversion/MoEToLoops/Emitters.h"
#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"
#include "compiler/Conversion/MoEToLoops/PopulatePatterns.h"

using namespace mlir;
using namespace mlir::moe;

void mlir::moe::emitCombineToken(LoopEmitter &em, Value rows, Value slotRows,
                                 Value addend, Value out, Value t) {
  auto &b = em.builder();
  Value k = em.dim(slotRows, 1);
  Value hidden = em.dim(out, 1);
  em.forEach(0, hidden, [&](Value h) {
    em.store(addend ? em.load(addend, {t, h}) : em.f32(0.0), out, {t, h});
  });
  em.forEach(0, k, [&](Value j) {
    Value row = em.load(slotRows, {t, j});
    Value routed =
        arith::CmpIOp::create(b, arith::CmpIPredicate::sge, row, em.i32(0));
    em.ifThen(routed, [&] {
      Value r = em.toIndex(row);
      em.forEach(0, hidden, [&](Value h) {
        em.store(em.add(em.load(out, {t, h}), em.load(rows, {r, h})), out,
                 {t, h});
      });
    });
  });
}

Value mlir::moe::emitCombineElement(LoopEmitter &em, Value rows,
                                   Value slotRows, Value addend, Value t,
                                   Value h) {
  auto &b = em.builder();
  Value init = addend ? em.load(addend, {t, h}) : em.f32(0.0);
  return em.reduce(em.index(0), em.dim(slotRows, 1), {init},
                   [&](Value j, ValueRange acc) -> SmallVector<Value> {
                     Value row = em.load(slotRows, {t, j});
                     Value routed = arith::CmpIOp::create(
                         b, arith::CmpIPredicate::sge, row, em.i32(0));
                     // A dropped slot reads row 0 and adds nothing.
                     Value r = em.toIndex(
                         arith::SelectOp::create(b, routed, row, em.i32(0)));
                     Value sum = em.add(acc[0], em.load(rows, {r, h}));
                     return {arith::SelectOp::create(b, routed, sum, acc[0])};
                   })[0];
}

namespace {
/// y[t] = addend[t] + rows[slot_rows[t, 0]] + ... + rows[slot_rows[t, k-1]],
/// in that order, so the result never depends on the plan's row order.
struct CombineToLoops : OpRewritePattern<CombineOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(CombineOp op,
                                PatternRewriter &rewriter) const override {
    LoopEmitter em(rewriter, op.getLoc());
    Value rows = em.toBuffer(op.getRows());
    Value slotRows = em.toBuffer(op.getSlotRows());
    Value addend = op.getAddend() ? em.toBuffer(op.getAddend()) : Value();
    Value tokens = em.dim(slotRows, 0);
    auto type = op.getOutput().getType();
    Value out = em.alloc(type, leadingDynamicSize(type, tokens));

    em.forEach(0, tokens, [&](Value t) {
      emitCombineToken(em, rows, slotRows, addend, out, t);
    });
    rewriter.replaceOp(op, em.toTensor(out, type));
    return success();
  }
};
} // namespace

void mlir::moe::populateCombineToLoopsPatterns(RewritePatternSet &patterns) {
  patterns.add<CombineToLoops>(patterns.getContext());
}
