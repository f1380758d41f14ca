//===- ExpertFFN.cpp - moe.expert_ffn and moe.shared_expert to loops ------===//

#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"
#include "compiler/Conversion/MoEToLoops/PopulatePatterns.h"

#include "mlir/Dialect/Math/IR/Math.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;

namespace {
Value emitActivation(LoopEmitter &em, Activation activation, Value x) {
  auto &b = em.builder();
  Value half = em.f32(0.5), one = em.f32(1.0);
  switch (activation) {
  case Activation::silu:
    return em.mul(x, em.sigmoid(x));
  case Activation::relu:
    return arith::MaximumFOp::create(b, x, em.f32(0.0));
  case Activation::gelu: {
    // 0.5 x (1 + erf(x / sqrt 2)), as torch's exact GELU.
    Value scaled = em.mul(x, em.f32(M_SQRT1_2));
    return em.mul(em.mul(half, x), em.add(one, math::ErfOp::create(b, scaled)));
  }
  case Activation::gelu_tanh: {
    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    Value cube = em.mul(em.mul(x, x), x);
    Value inner = em.mul(em.f32(std::sqrt(2.0 / M_PI)),
                         em.add(x, em.mul(em.f32(0.044715), cube)));
    return em.mul(em.mul(half, x), em.add(one, math::TanhOp::create(b, inner)));
  }
  }
  llvm_unreachable("unknown activation");
}

/// hidden[i] = act(gate_i · x_t) * (up_i · x_t), or act(up_i · x_t) without
/// a gate, for i in [0, width); `expert` selects the slice of stacked
/// weights (null for a shared expert's 2-D weights).
void emitHiddenActivations(LoopEmitter &em, Activation activation, Value x,
                           Value t, Value gate, Value up, Value expert,
                           Value hiddenSize, Value width, Value hidden) {
  auto weightIndex = [&](Value i, Value h) -> SmallVector<Value> {
    if (expert)
      return {expert, i, h};
    return {i, h};
  };
  auto dot = [&](Value weight, Value i) {
    return em.sum(
        em.index(0), hiddenSize,
        [&](Value h) {
          return em.mul(em.load(x, {t, h}), em.load(weight, weightIndex(i, h)),
                        true);
        },
        /*fast=*/true);
  };
  em.forEach(0, width, [&](Value i) {
    Value a = gate ? em.mul(emitActivation(em, activation, dot(gate, i)),
                            dot(up, i))
                   : emitActivation(em, activation, dot(up, i));
    em.store(a, hidden, {i});
  });
}

/// out[row, h] = scale * (down_h · hidden) for h in [0, hiddenSize).
void emitDownProjection(LoopEmitter &em, Value down, Value expert,
                        Value hidden, Value width, Value hiddenSize,
                        Value scale, Value out, Value row) {
  em.forEach(0, hiddenSize, [&](Value h) {
    Value y = em.sum(
        em.index(0), width,
        [&](Value i) {
          SmallVector<Value> idx = expert ? SmallVector<Value>{expert, h, i}
                                          : SmallVector<Value>{h, i};
          return em.mul(em.load(hidden, {i}), em.load(down, idx), true);
        },
        /*fast=*/true);
    em.store(scale ? em.mul(scale, y) : y, out, {row, h});
  });
}

struct ExpertFFNToLoops : OpRewritePattern<ExpertFFNOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ExpertFFNOp op,
                                PatternRewriter &rewriter) const override {
    LoopEmitter em(rewriter, op.getLoc());
    auto &b = em.builder();
    Value x = em.toBuffer(op.getInput());
    Value sorted = em.toBuffer(op.getSortedSlots());
    Value tileExperts = em.toBuffer(op.getTileExperts());
    Value weights = em.toBuffer(op.getWeights());
    Value gate = op.getGate() ? em.toBuffer(op.getGate()) : Value();
    Value up = em.toBuffer(op.getUp());
    Value down = em.toBuffer(op.getDown());
    int64_t widthSize = op.getUp().getType().getDimSize(1);
    Value hiddenSize = em.dim(x, 1);
    Value width = em.dim(up, 1);
    Value k = em.dim(weights, 1);
    Value rows = em.dim(sorted, 0);
    Value tileRows = em.index(op.getTileRows());
    auto type = op.getOutput().getType();
    Value out = em.alloc(type, leadingDynamicSize(type, rows));
    Value hidden = em.scratch(MemRefType::get({widthSize}, em.f32()),
        ShapedType::isDynamic(widthSize) ? ValueRange{width} : ValueRange{});

    // One flat loop over tiles: every row of a tile has the same expert.
    em.forEach(0, em.dim(tileExperts, 0), [&](Value tile) {
      Value expert = em.toIndex(em.load(tileExperts, {tile}));
      Value base = arith::MulIOp::create(b, tile, tileRows);
      em.forEach(0, tileRows, [&](Value i) {
        Value row = arith::AddIOp::create(b, base, i);
        Value slot = em.load(sorted, {row});
        Value used =
            arith::CmpIOp::create(b, arith::CmpIPredicate::sge, slot, em.i32(0));
        em.ifThenElse(
            used,
            [&] {
              Value s = em.toIndex(slot);
              Value t = arith::DivUIOp::create(b, s, k);
              Value j = arith::RemUIOp::create(b, s, k);
              emitHiddenActivations(em, op.getActivation(), x, t, gate, up,
                                    expert, hiddenSize, width, hidden);
              // The routing weight is applied in the down projection.
              emitDownProjection(em, down, expert, hidden, width, hiddenSize,
                                 em.load(weights, {t, j}), out, row);
            },
            [&] {
              em.forEach(0, hiddenSize, [&](Value h) {
                em.store(em.f32(0.0), out, {row, h});
              });
            });
      });
    });
    rewriter.replaceOp(op, em.toTensor(out, type));
    return success();
  }
};

struct SharedExpertToLoops : OpRewritePattern<SharedExpertOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SharedExpertOp op,
                                PatternRewriter &rewriter) const override {
    LoopEmitter em(rewriter, op.getLoc());
    Value x = em.toBuffer(op.getInput());
    Value gate = op.getGate() ? em.toBuffer(op.getGate()) : Value();
    Value up = em.toBuffer(op.getUp());
    Value down = em.toBuffer(op.getDown());
    Value expertGate =
        op.getExpertGate() ? em.toBuffer(op.getExpertGate()) : Value();
    int64_t widthSize = op.getUp().getType().getDimSize(0);
    Value tokens = em.dim(x, 0);
    Value hiddenSize = em.dim(x, 1);
    Value width = em.dim(up, 0);
    auto type = op.getOutput().getType();
    Value out = em.alloc(type, leadingDynamicSize(type, tokens));
    Value hidden = em.scratch(MemRefType::get({widthSize}, em.f32()),
        ShapedType::isDynamic(widthSize) ? ValueRange{width} : ValueRange{});

    em.forEach(0, tokens, [&](Value t) {
      emitHiddenActivations(em, op.getActivation(), x, t, gate, up, Value(),
                            hiddenSize, width, hidden);
      Value scale;
      if (expertGate) {
        Value zero = em.index(0);
        scale = em.sigmoid(em.sum(
            zero, hiddenSize,
            [&](Value h) {
              return em.mul(em.load(x, {t, h}), em.load(expertGate, {zero, h}),
                            true);
            },
            /*fast=*/true));
      }
      emitDownProjection(em, down, Value(), hidden, width, hiddenSize, scale,
                         out, t);
    });
    rewriter.replaceOp(op, em.toTensor(out, type));
    return success();
  }
};
} // namespace

void mlir::moe::populateExpertFFNToLoopsPatterns(RewritePatternSet &patterns) {
  patterns.add<ExpertFFNToLoops, SharedExpertToLoops>(patterns.getContext());
}
