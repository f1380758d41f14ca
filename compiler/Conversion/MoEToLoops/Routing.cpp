//===- Routing.cpp - moe.router/topk/stats/aux_loss to loops --------------===//

#include "compiler/Conversion/MoEToLoops/DotKernel.h"
#include "compiler/Conversion/MoEToLoops/Emitters.h"
#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"
#include "compiler/Conversion/MoEToLoops/PopulatePatterns.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <limits>

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

Value maximum(LoopEmitter &em, Value a, Value c) {
  // NaN-propagating, as torch.max: a NaN score poisons only its own token.
  return arith::MaximumFOp::create(em.builder(), a, c);
}

struct RouterToLoops : OpRewritePattern<RouterOp> {
  RouterToLoops(MLIRContext *context, const DotSchedule &schedule)
      : OpRewritePattern(context), schedule(schedule) {}
  DotSchedule schedule;

  LogicalResult matchAndRewrite(RouterOp op,
                                PatternRewriter &rewriter) const override {
    LoopEmitter em(rewriter, op.getLoc());
    Value x = em.toBuffer(op.getInput());
    Value w = em.toBuffer(op.getWeight());
    Value tokens = em.dim(x, 0);
    Value experts = em.dim(w, 0);
    auto type = op.getLogits().getType();
    Value logits = em.alloc(type, leadingDynamicSize(type, tokens));
    Value scores = em.alloc(type, leadingDynamicSize(type, tokens));

    emitBlockedDots(
        em, tokens, op.getWeight().getType().getDimSize(0), 1,
        op.getInput().getType().getDimSize(1),
        scheduleFor(op.getScheduleAttr(), schedule),
        [&](Value t) { return RowRef{x, {t}}; },
        [&](Value e) -> SmallVector<RowRef> { return {RowRef{w, {e}}}; },
        [&](Value t, Value e, ArrayRef<Value> dots) {
          em.store(dots[0], logits, {t, e});
        });
    em.forEach(0, tokens, [&](Value t) {
      if (op.getScoring() == ScoringFunc::softmax) {
        emitSoftmaxRow(em, logits, scores, t, experts);
      } else {
        em.forEach(0, experts, [&](Value e) {
          em.store(em.sigmoid(em.load(logits, {t, e})), scores, {t, e});
        });
      }
    });
    rewriter.replaceOp(op, {em.toTensor(logits, type),
                            em.toTensor(scores, op.getScores().getType())});
    return success();
  }
};

/// moe.router feeding moe.topk when nothing else reads the router's results
/// (no aux loss): one parallel loop over tiles of kRouteTile tokens computes
/// a tile's logits into scratch, scores them and selects, so the [T, E]
/// logits and scores never reach memory and the routing uses every thread.
/// Each token's dot products and selection run the same code in the same
/// order as the unfused lowering, so results do not change.
///
/// Rooted at the router, which the conversion visits first; the fused code
/// goes where the router was, so the selection bias must be defined there.
struct FusedRoutingToLoops : OpRewritePattern<RouterOp> {
  static constexpr int64_t kRouteTile = 64;

  FusedRoutingToLoops(MLIRContext *context, const DotSchedule &schedule)
      : OpRewritePattern(context, /*benefit=*/2), schedule(schedule) {}
  DotSchedule schedule;

  LogicalResult matchAndRewrite(RouterOp router,
                                PatternRewriter &rewriter) const override {
    TopKOp op = matchFusedRouting(router, rewriter);
    if (!op)
      return failure();
    Value biasTensor = op.getSelectionBias();
    LoopEmitter em(rewriter, router.getLoc());
    auto &b = em.builder();
    Value x = em.toBuffer(router.getInput());
    Value w = em.toBuffer(router.getWeight());
    Value bias = biasTensor ? em.toBuffer(biasTensor) : Value();
    int64_t experts = router.getWeight().getType().getDimSize(0);
    int64_t hidden = router.getInput().getType().getDimSize(1);
    bool softmax = router.getScoring() == ScoringFunc::softmax;
    Value tokens = em.dim(x, 0);
    auto weightsType = op.getWeights().getType();
    auto indicesType = op.getIndices().getType();
    Value weights = em.alloc(weightsType, leadingDynamicSize(weightsType, tokens));
    Value indices = em.alloc(indicesType, leadingDynamicSize(indicesType, tokens));

    Value tile = em.index(kRouteTile);
    Value numTiles = arith::CeilDivUIOp::create(b, tokens, tile);
    auto tileType = MemRefType::get({kRouteTile, experts}, em.f32());
    em.parallelForEach(em.index(0), numTiles, [&](Value i) {
      Value logits = em.scratch(tileType);
      Value scores = em.scratch(tileType);
      SelectionScratch selection = allocSelectionScratch(em, op);
      Value base = arith::MulIOp::create(b, i, tile);
      Value valid = arith::MinUIOp::create(
          b, tile, arith::SubIOp::create(b, tokens, base));
      emitBlockedDots(
          em, valid, experts, 1, hidden,
          scheduleFor(router.getScheduleAttr(), schedule),
          [&](Value r) {
            return RowRef{x, {arith::AddIOp::create(b, base, r)}};
          },
          [&](Value e) -> SmallVector<RowRef> { return {RowRef{w, {e}}}; },
          [&](Value r, Value e, ArrayRef<Value> dots) {
            em.store(dots[0], logits, {r, e});
          });
      em.forEach(0, valid, [&](Value r) {
        if (softmax) {
          emitSoftmaxRow(em, logits, scores, r, em.index(experts));
        } else {
          em.forEach(0, em.index(experts), [&](Value e) {
            em.store(em.sigmoid(em.load(logits, {r, e})), scores, {r, e});
          });
        }
        emitTopKRow(em, op, selection, scores, r, bias, weights, indices,
                    arith::AddIOp::create(b, base, r));
      });
    });
    if (op.getCapacity() > 0)
      emitCapacity(em, op, weights, indices);
    rewriter.replaceOp(op, {em.toTensor(weights, weightsType),
                            em.toTensor(indices, indicesType)});
    rewriter.eraseOp(router);
    return success();
  }
};

struct TopKToLoops : OpRewritePattern<TopKOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(TopKOp op,
                                PatternRewriter &rewriter) const override {
    LoopEmitter em(rewriter, op.getLoc());
    Value scores = em.toBuffer(op.getScores());
    Value bias = op.getSelectionBias() ? em.toBuffer(op.getSelectionBias())
                                       : Value();
    Value tokens = em.dim(scores, 0);
    auto weightsType = op.getWeights().getType();
    auto indicesType = op.getIndices().getType();
    Value weights = em.alloc(weightsType, leadingDynamicSize(weightsType, tokens));
    Value indices = em.alloc(indicesType, leadingDynamicSize(indicesType, tokens));
    SelectionScratch scratch = allocSelectionScratch(em, op);
    em.forEach(0, tokens, [&](Value t) {
      emitTopKRow(em, op, scratch, scores, t, bias, weights, indices, t);
    });
    if (op.getCapacity() > 0)
      emitCapacity(em, op, weights, indices);
    rewriter.replaceOp(op, {em.toTensor(weights, weightsType),
                            em.toTensor(indices, indicesType)});
    return success();
  }
};
} // namespace

TopKOp mlir::moe::matchFusedRouting(RouterOp router, RewriterBase &rewriter) {
  if (!router.getLogits().use_empty() || !router.getScores().hasOneUse()) {
    (void)rewriter.notifyMatchFailure(router, "results with other users");
    return {};
  }
  auto op = dyn_cast<TopKOp>(*router.getScores().getUsers().begin());
  if (!op) {
    (void)rewriter.notifyMatchFailure(router, "not feeding a moe.topk");
    return {};
  }
  Value bias = op.getSelectionBias();
  Operation *biasDef = bias ? bias.getDefiningOp() : nullptr;
  if (biasDef && biasDef->getBlock() == router->getBlock() &&
      !biasDef->isBeforeInBlock(router)) {
    (void)rewriter.notifyMatchFailure(router, "bias defined after it");
    return {};
  }
  return op;
}

void mlir::moe::emitSoftmaxRow(LoopEmitter &em, Value logits, Value t,
                               Value scores, Value scoreRow, Value experts) {
  Value m = em.reduce(em.index(0), experts, {em.f32(kNegInf)},
                      [&](Value e, ValueRange acc) -> SmallVector<Value> {
                        return {maximum(em, acc[0], em.load(logits, {t, e}))};
                      })[0];
  Value total = em.sum(
      em.index(0), experts,
      [&](Value e) {
        Value v = em.exp(arith::SubFOp::create(em.builder(),
                                               em.load(logits, {t, e}), m));
        em.store(v, scores, {scoreRow, e});
        return v;
      },
      /*fast=*/false);
  em.forEach(0, experts, [&](Value e) {
    em.store(arith::DivFOp::create(em.builder(),
                                   em.load(scores, {scoreRow, e}), total),
             scores, {scoreRow, e});
  });
}

SelectionScratch mlir::moe::allocSelectionScratch(LoopEmitter &em,
                                                   TopKOp op) {
  auto &b = em.builder();
  int64_t numExperts = op.getScores().getType().getDimSize(1);
  int64_t groups = op.getGroups();
  Type i8 = b.getI8Type();
  SelectionScratch s;
  s.sel = em.scratch(MemRefType::get({numExperts}, em.f32()));
  s.taken = em.scratch(MemRefType::get({numExperts}, i8));
  if (groups > 1) {
    s.groupScore = em.scratch(MemRefType::get({groups}, em.f32()));
    s.groupTaken = em.scratch(MemRefType::get({groups}, i8));
  }
  return s;
}

namespace {
/// The lowest-index entry of `values` not flagged in `flags` with the
/// highest value: strict `>` keeps the lower index on ties.
Value emitArgmax(LoopEmitter &em, Value values, Value flags, Value count) {
  auto &b = em.builder();
  Value zero8 = arith::ConstantOp::create(b, b.getI8IntegerAttr(0));
  Value none = em.index(-1);
  auto result = em.reduce(
      em.index(0), count, {em.f32(kNegInf), none},
      [&](Value i, ValueRange acc) -> SmallVector<Value> {
        Value v = em.load(values, {i});
        Value free = arith::CmpIOp::create(
            b, arith::CmpIPredicate::eq,
            memref::LoadOp::create(b, flags, ValueRange{i}), zero8);
        Value first = arith::CmpIOp::create(b, arith::CmpIPredicate::slt,
                                            acc[1], em.index(0));
        Value greater = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT,
                                              v, acc[0]);
        Value better = arith::AndIOp::create(
            b, free, arith::OrIOp::create(b, first, greater));
        return {arith::SelectOp::create(b, better, v, acc[0]),
                arith::SelectOp::create(b, better, i, acc[1])};
      });
  return result[1];
}

/// Flags every expert outside the `topk_groups` best groups as taken.
void emitGroupLimit(LoopEmitter &em, TopKOp op, Value sel, Value taken,
                  Value groupScore, Value groupTaken, int64_t groups,
                  int64_t perGroup) {
  auto &b = em.builder();
  Value zero8 = arith::ConstantOp::create(b, b.getI8IntegerAttr(0));
  Value one8 = arith::ConstantOp::create(b, b.getI8IntegerAttr(1));
  Value size = em.index(perGroup);
  em.forEach(0, em.index(groups), [&](Value g) {
    Value first = arith::MulIOp::create(b, g, size);
    Value last = arith::AddIOp::create(b, first, size);
    Value score;
    if (op.getGroupScore() == GroupScore::max) {
      score = em.reduce(first, last, {em.f32(kNegInf)},
                        [&](Value e, ValueRange acc) -> SmallVector<Value> {
                          return {maximum(em, acc[0], em.load(sel, {e}))};
                        })[0];
    } else {
      // The two best scores, tracked together (ties count twice).
      auto best2 = em.reduce(
          first, last, {em.f32(kNegInf), em.f32(kNegInf)},
          [&](Value e, ValueRange acc) -> SmallVector<Value> {
            Value v = em.load(sel, {e});
            Value gt1 = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT,
                                              v, acc[0]);
            Value gt2 = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT,
                                              v, acc[1]);
            Value second = arith::SelectOp::create(
                b, gt1, acc[0], arith::SelectOp::create(b, gt2, v, acc[1]));
            return {arith::SelectOp::create(b, gt1, v, acc[0]), second};
          });
      score = em.add(best2[0], best2[1]);
    }
    em.store(score, groupScore, {g});
    memref::StoreOp::create(b, zero8, groupTaken, ValueRange{g});
  });
  em.forEach(0, em.index(op.getTopkGroups()), [&](Value) {
    Value best = emitArgmax(em, groupScore, groupTaken, em.index(groups));
    memref::StoreOp::create(b, one8, groupTaken, ValueRange{best});
  });
  em.forEach(0, em.index(groups), [&](Value g) {
    Value dropped = arith::CmpIOp::create(
        b, arith::CmpIPredicate::eq,
        memref::LoadOp::create(b, groupTaken, ValueRange{g}), zero8);
    em.ifThen(dropped, [&] {
      Value first = arith::MulIOp::create(b, g, size);
      em.forEach(first, arith::AddIOp::create(b, first, size), [&](Value e) {
        memref::StoreOp::create(b, one8, taken, ValueRange{e});
      });
    });
  });
}

} // namespace

void mlir::moe::emitTopKRow(LoopEmitter &em, TopKOp op,
                             const SelectionScratch &scratch, Value scores,
                             Value scoreRow, Value bias, Value weights,
                             Value indices, Value outRow) {
  Value t = scoreRow, o = outRow;
  auto &b = em.builder();
  int64_t numExperts = op.getScores().getType().getDimSize(1);
  int64_t groups = op.getGroups();
  int64_t perGroup = numExperts / groups;
  Value experts = em.index(numExperts);
  Value k = em.index(op.getK());
  Value sel = scratch.sel, taken = scratch.taken;
  Value zero8 = arith::ConstantOp::create(b, b.getI8IntegerAttr(0));
  Value one8 = arith::ConstantOp::create(b, b.getI8IntegerAttr(1));
  em.forEach(0, experts, [&](Value e) {
    Value v = em.load(scores, {t, e});
    if (bias)
      v = em.add(v, em.load(bias, {e}));
    em.store(v, sel, {e});
    memref::StoreOp::create(b, zero8, taken, ValueRange{e});
  });
  if (groups > 1)
    emitGroupLimit(em, op, sel, taken, scratch.groupScore,
                   scratch.groupTaken, groups, perGroup);
  em.forEach(0, k, [&](Value j) {
    Value best = emitArgmax(em, sel, taken, experts);
    memref::StoreOp::create(b, one8, taken, ValueRange{best});
    em.store(em.fromIndex(best, b.getI32Type()), indices, {o, j});
    em.store(em.load(scores, {t, best}), weights, {o, j});
  });
  if (op.getRenormalize()) {
    Value total = em.sum(
        em.index(0), k, [&](Value j) { return em.load(weights, {o, j}); },
        false);
    em.forEach(0, k, [&](Value j) {
      em.store(arith::DivFOp::create(b, em.load(weights, {o, j}), total),
               weights, {o, j});
    });
  }
  double scale = op.getScalingFactor().convertToDouble();
  if (scale != 1.0) {
    em.forEach(0, k, [&](Value j) {
      em.store(em.mul(em.load(weights, {o, j}), em.f32(scale)), weights,
               {o, j});
    });
  }
}

void mlir::moe::emitCapacity(LoopEmitter &em, TopKOp op, Value weights,
                             Value indices) {
  // The dispatch's phases in sequence (Emitters.h): a slot's rank among
  // its expert's slots, in token order, decides.
  int64_t numExperts = op.getScores().getType().getDimSize(1);
  ChunkHistograms histograms = emitChunkHistograms(em, indices, numExperts);
  Value chunkCounts = histograms.counts, chunks = histograms.chunks;
  em.forEach(0, em.index(numExperts),
             [&](Value e) { emitChunkRanks(em, chunkCounts, e); });
  em.forEach(0, chunks, [&](Value c) {
    emitChunkCapacity(em, indices, weights, chunkCounts, c, op.getCapacity());
  });
}

void mlir::moe::emitCounts(LoopEmitter &em, Value indices, Value counts) {
  auto &b = em.builder();
  Type element = cast<MemRefType>(counts.getType()).getElementType();
  Value one = arith::ConstantOp::create(b, b.getIntegerAttr(element, 1));
  em.fill(counts, arith::ConstantOp::create(b, b.getIntegerAttr(element, 0)));
  em.forEach(0, em.dim(indices, 0), [&](Value t) {
    em.forEach(0, em.dim(indices, 1), [&](Value j) {
      Value e = em.load(indices, {t, j});
      Value routed =
          arith::CmpIOp::create(b, arith::CmpIPredicate::sge, e, em.i32(0));
      em.ifThen(routed, [&] {
        Value ei = em.toIndex(e);
        em.store(arith::AddIOp::create(b, em.load(counts, {ei}), one), counts,
                 {ei});
      });
    });
  });
}

namespace {
struct StatsToLoops : OpRewritePattern<StatsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(StatsOp op,
                                PatternRewriter &rewriter) const override {
    LoopEmitter em(rewriter, op.getLoc());
    Value indices = em.toBuffer(op.getIndices());
    auto type = op.getTokensPerExpert().getType();
    Value counts = em.alloc(type);
    emitCounts(em, indices, counts);
    rewriter.replaceOp(op, em.toTensor(counts, type));
    return success();
  }
};

struct AuxLossToLoops : OpRewritePattern<AuxLossOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AuxLossOp op,
                                PatternRewriter &rewriter) const override {
    LoopEmitter em(rewriter, op.getLoc());
    auto &b = em.builder();
    Value logits = em.toBuffer(op.getLogits());
    int64_t numExperts = op.getLogits().getType().getDimSize(1);
    if (ShapedType::isDynamic(numExperts))
      return rewriter.notifyMatchFailure(op, "needs a static expert count");
    Value tokens = em.dim(logits, 0);
    Value experts = em.index(numExperts);
    // Empty batches give a zero loss, not 0/0.
    Value tokensF = arith::UIToFPOp::create(
        b, em.f32(), em.fromIndex(arith::MaxUIOp::create(b, tokens, em.index(1)),
                                  b.getI64Type()));
    Value loss = em.alloc(MemRefType::get({}, em.f32()));

    // Row statistics of the logits: max and sum of exp(l - max).
    auto rowStats = [&](Value t) -> std::pair<Value, Value> {
      Value m = em.reduce(em.index(0), experts, {em.f32(kNegInf)},
                          [&](Value e, ValueRange acc) -> SmallVector<Value> {
                            return {maximum(em, acc[0], em.load(logits, {t, e}))};
                          })[0];
      Value s = em.sum(em.index(0), experts, [&](Value e) {
        return em.exp(arith::SubFOp::create(b, em.load(logits, {t, e}), m));
      }, false);
      return {m, s};
    };

    if (op.getKind() == AuxLossKind::z_loss) {
      Value total = em.sum(em.index(0), tokens, [&](Value t) {
        auto [mm, ss] = rowStats(t);
        Value m = mm, s = ss;
        Value lse = em.add(m, math::LogOp::create(b, s));
        return em.mul(lse, lse);
      }, false);
      em.store(arith::DivFOp::create(b, total, tokensF), loss, {});
    } else {
      Value indices = em.toBuffer(op.getIndices());
      Value prob = em.scratch(MemRefType::get({numExperts}, em.f32()));
      Value counts = em.scratch(MemRefType::get({numExperts}, b.getI64Type()));
      em.fill(prob, em.f32(0.0));
      emitCounts(em, indices, counts);
      em.forEach(0, tokens, [&](Value t) {
        auto [mm, ss] = rowStats(t);
        Value m = mm, s = ss;
        em.forEach(0, experts, [&](Value e) {
          Value p = arith::DivFOp::create(
              b, em.exp(arith::SubFOp::create(b, em.load(logits, {t, e}), m)), s);
          em.store(em.add(em.load(prob, {e}), p), prob, {e});
        });
      });
      Value slots = arith::MulFOp::create(
          b, tokensF,
          arith::UIToFPOp::create(
              b, em.f32(), em.fromIndex(em.dim(indices, 1), b.getI64Type())));
      Value dot = em.sum(em.index(0), experts, [&](Value e) {
        Value f = arith::DivFOp::create(
            b, arith::UIToFPOp::create(b, em.f32(), em.load(counts, {e})), slots);
        return em.mul(f, arith::DivFOp::create(b, em.load(prob, {e}), tokensF));
      }, false);
      em.store(em.mul(dot, em.f32(numExperts)), loss, {});
    }
    rewriter.replaceOp(op, em.toTensor(loss, op.getLoss().getType()));
    return success();
  }
};
} // namespace

SmallVector<Value> mlir::moe::leadingDynamicSize(RankedTensorType type,
                                                 Value leading) {
  if (type.isDynamicDim(0))
    return {leading};
  return {};
}

void mlir::moe::populateRoutingToLoopsPatterns(RewritePatternSet &patterns,
                                                const DotSchedule &schedule) {
  patterns.add<TopKToLoops, StatsToLoops, AuxLossToLoops>(
      patterns.getContext());
  patterns.add<RouterToLoops, FusedRoutingToLoops>(patterns.getContext(),
                                                   schedule);
}
