//===- ExpertFFN.cpp - moe.expert_ffn and moe.shared_expert to loops ------===//

#include "compiler/Conversion/MoEToLoops/DotKernel.h"
#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"
#include "compiler/Conversion/MoEToLoops/PopulatePatterns.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;

namespace {
/// The rows of one tile of an FFN: which token each row reads, and the
/// factor its output is scaled by (the routing weight, or the shared
/// expert's sigmoid gate).
struct TileRows {
  Value token; // memref<tile_rows x index>
  Value scale; // memref<tile_rows x f32>, or null for 1
};

/// out[outBase + r] = scale[r] * down(act(gate x) * up x) for the first
/// `valid` rows of a tile; `expert` picks the slice of stacked weights
/// (null for a shared expert's 2-D weights).
/// Scratch for one tile: row tokens, row scales, the hidden activations
/// and, with bf16 activations, the tile's rows of x rounded to bf16 (heap:
/// tile_rows x width floats can exceed a thread's stack).
struct TileScratch {
  TileRows rows;
  Value hidden; // [tile_rows, width]
  Value x;      // [tile_rows, hidden], or null: the matmuls read x itself

  /// The matmuls' activation row `r`: the staged row, else x[token[r]].
  RowRef activationRow(LoopEmitter &em, Value input, Value r) const {
    if (x)
      return RowRef{x, {r}};
    return RowRef{input, {memref::LoadOp::create(em.builder(), rows.token,
                                                 ValueRange{r})}};
  }

  /// hidden[indices] = a, rounded to bf16 with bf16 activations.
  void storeHidden(LoopEmitter &em, Value a, ValueRange indices) const {
    if (x)
      em.storeRoundedToBF16(a, hidden, indices);
    else if (isa<VectorType>(a.getType()))
      vector::StoreOp::create(em.builder(), a, hidden, indices);
    else
      em.store(a, hidden, indices);
  }
};

/// emitFFNTile for weights packed into panels of one vector each (of
/// `kPack` inputs per lane).
void emitPackedFFNTile(LoopEmitter &em, Activation activation,
                       const DotSchedule &schedule, Value x,
                       const TileScratch &scratch, Value valid, Value gate,
                       Value up, Value down, Value expert, Value out,
                       Value outBase, int64_t kPack) {
  auto &b = em.builder();
  const TileRows &tile = scratch.rows;
  Value hidden = scratch.hidden;
  int64_t lanes = schedule.vectorWidth;
  auto downType = cast<MemRefType>(down.getType());
  int64_t width = downType.getDimSize(downType.getRank() - 2) * kPack;
  int64_t hiddenSize = cast<MemRefType>(x.getType()).getDimSize(1);
  auto panelRef = [&](Value w, Value p) {
    return expert ? RowRef{w, {expert, p}} : RowRef{w, {p}};
  };
  auto lane0 = [&](Value p) {
    return arith::MulIOp::create(b, p, em.index(lanes));
  };

  emitPanelDots(
      em, valid, llvm::divideCeilSigned(width, lanes), gate ? 2 : 1, hiddenSize,
      kPack, schedule,
      [&](Value r) { return scratch.activationRow(em, x, r); },
      [&](Value p) -> SmallVector<RowRef> {
        if (gate)
          return {panelRef(gate, p), panelRef(up, p)};
        return {panelRef(up, p)};
      },
      [&](Value r, Value p, ArrayRef<Value> acc) {
        Value a = em.activation(activation, acc[0]);
        if (gate)
          a = em.mul(a, acc[1]);
        scratch.storeHidden(em, a, {r, lane0(p)});
      });

  // The down projection, scaled in its epilogue; a partial last panel is
  // stored through a mask.
  auto maskType = VectorType::get({lanes}, b.getI1Type());
  emitPanelDots(
      em, valid, llvm::divideCeilSigned(hiddenSize, lanes), 1, width, kPack,
      schedule,
      [&](Value r) { return RowRef{hidden, {r}}; },
      [&](Value q) -> SmallVector<RowRef> { return {panelRef(down, q)}; },
      [&](Value r, Value q, ArrayRef<Value> acc) {
        Value y = acc[0];
        if (tile.scale)
          y = em.mul(vector::BroadcastOp::create(b, y.getType(),
                                                 em.load(tile.scale, {r})),
                     y);
        SmallVector<Value> at{arith::AddIOp::create(b, outBase, r), lane0(q)};
        if (hiddenSize % lanes == 0) {
          vector::StoreOp::create(b, y, out, at);
          return;
        }
        Value left = arith::SubIOp::create(b, em.index(hiddenSize), lane0(q));
        Value mask = vector::CreateMaskOp::create(b, maskType, ValueRange{left});
        vector::MaskedStoreOp::create(b, out, at, mask, y);
      });
}

void emitFFNTile(LoopEmitter &em, Activation activation,
                 const DotSchedule &schedule, Value x,
                 const TileScratch &scratch, Value valid, Value gate, Value up,
                 Value down, Value expert, Value out, Value outBase,
                 int64_t panel, int64_t kPack) {
  if (panel > 0)
    return emitPackedFFNTile(em, activation, schedule, x, scratch, valid, gate,
                             up, down, expert, out, outBase, kPack);
  const TileRows &tile = scratch.rows;
  Value hidden = scratch.hidden;
  auto &b = em.builder();
  auto upType = cast<MemRefType>(up.getType());
  int64_t width = upType.getDimSize(upType.getRank() - 2);
  int64_t hiddenSize = upType.getDimSize(upType.getRank() - 1);
  auto weightRow = [&](Value w, Value row) {
    return expert ? RowRef{w, {expert, row}} : RowRef{w, {row}};
  };
  auto tokenRow = [&](Value r) { return scratch.activationRow(em, x, r); };

  // Gate and up projections with the activation applied to the results.
  emitBlockedDots(
      em, valid, width, gate ? 2 : 1, hiddenSize, schedule, tokenRow,
      [&](Value i) -> SmallVector<RowRef> {
        if (gate)
          return {weightRow(gate, i), weightRow(up, i)};
        return {weightRow(up, i)};
      },
      [&](Value r, Value i, ArrayRef<Value> dots) {
        Value a = em.activation(activation, dots[0]);
        if (gate)
          a = em.mul(a, dots[1]);
        scratch.storeHidden(em, a, {r, i});
      });

  // The down projection, scaled in its epilogue.
  emitBlockedDots(
      em, valid, hiddenSize, 1, width, schedule,
      [&](Value r) { return RowRef{hidden, {r}}; },
      [&](Value h) -> SmallVector<RowRef> { return {weightRow(down, h)}; },
      [&](Value r, Value h, ArrayRef<Value> dots) {
        Value y = dots[0];
        if (tile.scale)
          y = em.mul(em.load(tile.scale, {r}), y);
        em.store(y, out, {arith::AddIOp::create(b, outBase, r), h});
      });
}

/// The hidden activations' row length: whole panels when packed.
int64_t paddedWidth(int64_t width, int64_t panel) {
  return panel ? llvm::divideCeilSigned(width, panel) * panel : width;
}

/// What the matmuls of an FFN op multiply: with bf16 activations, rows
/// of x staged rounded to bf16 and the hidden activations rounded, kept as
/// bf16 when the CPU's bf16 dot products read them (pair-packed weights),
/// else as f32 holding bf16 values.
struct ActivationStaging {
  bool bf16 = false;
  Type element; // of the staged rows and the hidden activations

  template <typename OpTy>
  static ActivationStaging of(OpTy op, const DotSchedule &schedule,
                              Builder &b) {
    ActivationStaging staging;
    staging.bf16 = op.hasBF16Activations();
    bool dot = staging.bf16 && schedule.bf16Dot != BF16Dot::none &&
               op.getWeightKPack() == 2;
    staging.element = dot ? Type(b.getBF16Type()) : Type(b.getF32Type());
    return staging;
  }
};

/// Scratch of one tile, allocated inside the (parallel) tile loop so that
/// each thread has its own; heap, because tile_rows x width floats can
/// exceed a worker thread's stack.
TileScratch allocTileScratch(LoopEmitter &em, int64_t tileRows, int64_t width,
                             int64_t hiddenSize,
                             const ActivationStaging &staging) {
  auto &b = em.builder();
  TileScratch s;
  s.rows.token = em.alloc(MemRefType::get({tileRows}, b.getIndexType()));
  s.rows.scale = em.alloc(MemRefType::get({tileRows}, em.f32()));
  s.hidden = em.alloc(MemRefType::get({tileRows, width}, staging.element));
  if (staging.bf16)
    s.x = em.alloc(MemRefType::get({tileRows, hiddenSize}, staging.element));
  return s;
}

/// With bf16 activations: the tile's `valid` rows of x, rounded to bf16,
/// into the scratch, a vector at a time (the router and the shared experts'
/// sigmoid gate keep reading x in f32).
void stageActivationRows(LoopEmitter &em, Value x, const TileScratch &scratch,
                         Value valid, int64_t hiddenSize, int64_t lanes) {
  if (!scratch.x)
    return;
  auto &b = em.builder();
  int64_t full = hiddenSize / lanes * lanes;
  auto vecType = VectorType::get({lanes}, em.f32());
  em.forEach(0, valid, [&](Value r) {
    Value token = memref::LoadOp::create(b, scratch.rows.token, ValueRange{r});
    auto loop = scf::ForOp::create(b, em.index(0), em.index(full),
                                   em.index(lanes));
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPoint(loop.getBody()->getTerminator());
      Value h = loop.getInductionVar();
      Value v = vector::LoadOp::create(b, vecType, x, ValueRange{token, h});
      em.storeRoundedToBF16(v, scratch.x, {r, h});
    }
    if (full < hiddenSize)
      em.forEach(em.index(full), em.index(hiddenSize), [&](Value h) {
        em.storeRoundedToBF16(em.load(x, {token, h}), scratch.x, {r, h});
      });
  });
}

/// The panel kernels load one vector per panel.
template <typename OpTy>
LogicalResult checkPanelWidth(OpTy op, PatternRewriter &rewriter,
                              const DotSchedule &schedule) {
  int64_t panel = op.getWeightPanel();
  if (panel == 0 || panel == schedule.vectorWidth)
    return success();
  return rewriter.notifyMatchFailure(
      op, "weight_panel differs from the vector width");
}

struct ExpertFFNToLoops : OpRewritePattern<ExpertFFNOp> {
  ExpertFFNToLoops(MLIRContext *context, const DotSchedule &schedule)
      : OpRewritePattern(context), schedule(schedule) {}

  LogicalResult matchAndRewrite(ExpertFFNOp op,
                                PatternRewriter &rewriter) const override {
    DotSchedule schedule = scheduleFor(op.getScheduleAttr(), this->schedule);
    LoopEmitter em(rewriter, op.getLoc());
    auto &b = em.builder();
    Value x = em.toBuffer(op.getInput());
    Value sorted = em.toBuffer(op.getSortedSlots());
    Value tileExperts = em.toBuffer(op.getTileExperts());
    Value weights = em.toBuffer(op.getWeights());
    Value gate = op.getGate() ? em.toBuffer(op.getGate()) : Value();
    Value up = em.toBuffer(op.getUp());
    Value down = em.toBuffer(op.getDown());
    int64_t tileRows = op.getTileRows();
    Value hiddenSize = em.dim(x, 1);
    Value k = em.dim(weights, 1);
    auto type = op.getOutput().getType();
    Value out = em.alloc(type, leadingDynamicSize(type, em.dim(sorted, 0)));
    if (failed(checkPanelWidth(op, rewriter, schedule)))
      return failure();
    int64_t width = paddedWidth(op.getWidth(), op.getWeightPanel());

    // One flat parallel loop over tiles: every row of a tile has the same
    // expert, and its used rows come first (padding ends each expert's
    // segment). Tiles write disjoint rows, so any thread may run any tile.
    auto staging = ActivationStaging::of(op, schedule, b);
    em.parallelForEach(em.index(0), em.dim(tileExperts, 0), [&](Value tile) {
      TileScratch scratch = allocTileScratch(
          em, tileRows, width, op.getInput().getType().getDimSize(1), staging);
      Value expert = em.toIndex(em.load(tileExperts, {tile}));
      Value base = arith::MulIOp::create(b, tile, em.index(tileRows));
      Value valid = em.reduce(
          em.index(0), em.index(tileRows), {em.index(0)},
          [&](Value i, ValueRange acc) -> SmallVector<Value> {
            Value slot = em.load(sorted, {arith::AddIOp::create(b, base, i)});
            Value used = arith::CmpIOp::create(b, arith::CmpIPredicate::sge,
                                               slot, em.i32(0));
            return {arith::SelectOp::create(
                b, used, arith::AddIOp::create(b, acc[0], em.index(1)),
                acc[0])};
          })[0];
      em.forEach(0, valid, [&](Value i) {
        Value s = em.toIndex(em.load(sorted, {arith::AddIOp::create(b, base, i)}));
        Value t = arith::DivUIOp::create(b, s, k);
        Value j = arith::RemUIOp::create(b, s, k);
        memref::StoreOp::create(b, t, scratch.rows.token, ValueRange{i});
        em.store(em.load(weights, {t, j}), scratch.rows.scale, {i});
      });
      em.forEach(valid, em.index(tileRows), [&](Value i) {
        Value row = arith::AddIOp::create(b, base, i);
        em.forEach(0, hiddenSize,
                   [&](Value h) { em.store(em.f32(0.0), out, {row, h}); });
      });
      stageActivationRows(em, x, scratch, valid,
                          op.getInput().getType().getDimSize(1),
                          schedule.vectorWidth);
      emitFFNTile(em, op.getActivation(), schedule, x, scratch, valid, gate,
                  up, down, expert, out, base, op.getWeightPanel(),
                  op.getWeightKPack());
    });
    rewriter.replaceOp(op, em.toTensor(out, type));
    return success();
  }

  DotSchedule schedule;
};

struct SharedExpertToLoops : OpRewritePattern<SharedExpertOp> {
  SharedExpertToLoops(MLIRContext *context, const DotSchedule &schedule)
      : OpRewritePattern(context), schedule(schedule) {}

  LogicalResult matchAndRewrite(SharedExpertOp op,
                                PatternRewriter &rewriter) const override {
    DotSchedule schedule = scheduleFor(op.getScheduleAttr(), this->schedule);
    LoopEmitter em(rewriter, op.getLoc());
    auto &b = em.builder();
    Value x = em.toBuffer(op.getInput());
    Value gate = op.getGate() ? em.toBuffer(op.getGate()) : Value();
    Value up = em.toBuffer(op.getUp());
    Value down = em.toBuffer(op.getDown());
    Value expertGate =
        op.getExpertGate() ? em.toBuffer(op.getExpertGate()) : Value();
    int64_t tileRows = 64;
    Value tokens = em.dim(x, 0);
    int64_t hiddenSize = op.getInput().getType().getDimSize(1);
    auto type = op.getOutput().getType();
    Value out = em.alloc(type, leadingDynamicSize(type, tokens));
    if (failed(checkPanelWidth(op, rewriter, schedule)))
      return failure();
    int64_t width = paddedWidth(op.getWidth(), op.getWeightPanel());

    // Parallel tiles of consecutive tokens.
    Value rowsPerTile = em.index(tileRows);
    Value numTiles = arith::CeilDivUIOp::create(b, tokens, rowsPerTile);
    auto staging = ActivationStaging::of(op, schedule, b);
    em.parallelForEach(em.index(0), numTiles, [&](Value tile) {
      TileScratch scratch =
          allocTileScratch(em, tileRows, width, hiddenSize, staging);
      if (!expertGate)
        scratch.rows.scale = Value();
      Value base = arith::MulIOp::create(b, tile, rowsPerTile);
      Value valid = arith::MinUIOp::create(
          b, rowsPerTile, arith::SubIOp::create(b, tokens, base));
      em.forEach(0, valid, [&](Value i) {
        memref::StoreOp::create(b, arith::AddIOp::create(b, base, i),
                                scratch.rows.token, ValueRange{i});
      });
      if (expertGate) {
        // g_t = sigmoid(x_t . expert_gate[0]).
        emitBlockedDots(
            em, valid, 1, 1, hiddenSize, schedule,
            [&](Value r) {
              return RowRef{x, {memref::LoadOp::create(b, scratch.rows.token,
                                                       ValueRange{r})}};
            },
            [&](Value) -> SmallVector<RowRef> {
              return {RowRef{expertGate, {em.index(0)}}};
            },
            [&](Value r, Value, ArrayRef<Value> dots) {
              em.store(em.sigmoid(dots[0]), scratch.rows.scale, {r});
            });
      }
      stageActivationRows(em, x, scratch, valid, hiddenSize,
                          schedule.vectorWidth);
      emitFFNTile(em, op.getActivation(), schedule, x, scratch, valid, gate,
                  up, down, Value(), out, base, op.getWeightPanel(),
                  op.getWeightKPack());
    });
    rewriter.replaceOp(op, em.toTensor(out, type));
    return success();
  }

  DotSchedule schedule;
};
} // namespace

void mlir::moe::populateExpertFFNToLoopsPatterns(RewritePatternSet &patterns,
                                                 const DotSchedule &schedule) {
  patterns.add<ExpertFFNToLoops, SharedExpertToLoops>(patterns.getContext(),
                                                      schedule);
}
