//===- DotKernel.cpp - Register-blocked, vectorised dot products ----------===//

#include "compiler/Conversion/MoEToLoops/DotKernel.h"

#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
/// Loads `width` elements of `row` from `k` as f32 (masked when `mask`).
Value loadVector(LoopEmitter &em, const RowRef &row, Value k, int64_t width,
                 Value mask) {
  auto &b = em.builder();
  Type element = cast<MemRefType>(row.memref.getType()).getElementType();
  auto type = VectorType::get({width}, element);
  SmallVector<Value> indices(row.prefix);
  indices.push_back(k);
  Value v;
  if (mask) {
    Value zeros = arith::ConstantOp::create(
        b, type, DenseElementsAttr::get(type, b.getZeroAttr(element)));
    v = vector::MaskedLoadOp::create(b, type, row.memref, indices, mask, zeros);
  } else {
    v = vector::LoadOp::create(b, type, row.memref, indices);
  }
  if (!element.isF32())
    v = arith::ExtFOp::create(b, VectorType::get({width}, em.f32()), v);
  return v;
}

/// One step of the kernel: acc[m][n] += a_m[k:k+w] * c_n[k:k+w].
SmallVector<Value> accumulate(LoopEmitter &em, ArrayRef<RowRef> rows,
                              ArrayRef<RowRef> cols, Value k, int64_t width,
                              Value mask, ValueRange acc) {
  SmallVector<Value> a, c, next;
  for (const RowRef &row : rows)
    a.push_back(loadVector(em, row, k, width, mask));
  for (const RowRef &col : cols)
    c.push_back(loadVector(em, col, k, width, mask));
  for (size_t m = 0; m < rows.size(); ++m)
    for (size_t n = 0; n < cols.size(); ++n)
      next.push_back(vector::FMAOp::create(em.builder(), a[m], c[n],
                                           acc[m * cols.size() + n]));
  return next;
}
} // namespace

SmallVector<SmallVector<Value>>
mlir::moe::emitDotBlock(LoopEmitter &em, ArrayRef<RowRef> rows,
                        ArrayRef<RowRef> cols, Value kStart, int64_t depth,
                        const DotSchedule &schedule) {
  auto &b = em.builder();
  int64_t width = schedule.vectorWidth;
  auto vecType = VectorType::get({width}, em.f32());
  Value zero = arith::ConstantOp::create(
      b, vecType, DenseElementsAttr::get(vecType, b.getF32FloatAttr(0.0)));
  SmallVector<Value> init(rows.size() * cols.size(), zero);

  int64_t full = depth / width * width;
  SmallVector<Value> acc = init;
  if (full > 0) {
    auto loop = scf::ForOp::create(
        b, kStart, arith::AddIOp::create(b, kStart, em.index(full)),
        em.index(width), init);
    OpBuilder::InsertionGuard guard(b);
    Block *body = loop.getBody();
    if (!body->empty())
      body->getTerminator()->erase();
    b.setInsertionPointToEnd(body);
    scf::YieldOp::create(b, accumulate(em, rows, cols, loop.getInductionVar(),
                                       width, Value(), loop.getRegionIterArgs()));
    b.setInsertionPointAfter(loop);
    acc.assign(loop.getResults().begin(), loop.getResults().end());
  }
  if (full < depth) {
    // The tail of k: one masked step (masked lanes load zeros).
    Value mask = vector::CreateMaskOp::create(
        b, VectorType::get({width}, b.getI1Type()),
        ValueRange{em.index(depth - full)});
    acc = accumulate(em, rows, cols,
                     arith::AddIOp::create(b, kStart, em.index(full)), width,
                     mask, acc);
  }

  SmallVector<SmallVector<Value>> dots(rows.size());
  for (size_t m = 0; m < rows.size(); ++m)
    for (size_t n = 0; n < cols.size(); ++n)
      dots[m].push_back(vector::ReductionOp::create(
          b, b.getLoc(), vector::CombiningKind::ADD, acc[m * cols.size() + n],
          /*acc=*/Value(), arith::FastMathFlags::reassoc));
  return dots;
}

namespace {
/// The operand rows of one register block: activation rows
/// [row0, row0 + m) times the weight rows (or panels) of outputs
/// [out0, out0 + n).
struct RegisterBlock {
  SmallVector<Value> rowIds, outIds;
  SmallVector<RowRef> rows, cols;
};

RegisterBlock gatherBlock(LoopEmitter &em, Value row0, int64_t m, Value out0,
                  int64_t n, function_ref<RowRef(Value)> activationRow,
                  function_ref<SmallVector<RowRef>(Value)> weightRows) {
  auto &b = em.builder();
  RegisterBlock block;
  for (int64_t i = 0; i < m; ++i) {
    block.rowIds.push_back(arith::AddIOp::create(b, row0, em.index(i)));
    block.rows.push_back(activationRow(block.rowIds.back()));
  }
  for (int64_t j = 0; j < n; ++j) {
    block.outIds.push_back(arith::AddIOp::create(b, out0, em.index(j)));
    for (RowRef &ref : weightRows(block.outIds.back()))
      block.cols.push_back(std::move(ref));
  }
  return block;
}

/// body(row0, m) over [0, numRows): blocks of `rowBlock` rows, then one
/// block of exactly the remaining rows (a kernel per possible remainder), so
/// every weight is read once per `rowBlock` rows and no row runs a narrow,
/// latency-bound kernel unless it is alone.
void forEachRowBlock(LoopEmitter &em, Value numRows, int64_t rowBlock,
                     function_ref<void(Value, int64_t)> body) {
  auto &b = em.builder();
  Value mr = em.index(rowBlock);
  Value fullRows =
      arith::MulIOp::create(b, arith::DivUIOp::create(b, numRows, mr), mr);
  auto loop = scf::ForOp::create(b, em.index(0), fullRows, mr);
  {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(loop.getBody()->getTerminator());
    body(loop.getInductionVar(), rowBlock);
  }
  Value rest = arith::SubIOp::create(b, numRows, fullRows);
  for (int64_t size = 1; size < rowBlock; ++size) {
    Value exact = arith::CmpIOp::create(b, arith::CmpIPredicate::eq, rest,
                                        em.index(size));
    em.ifThen(exact, [&] { body(fullRows, size); });
  }
}

/// body(out0, n) over [0, numOutputs): a loop over blocks of `perBlock`
/// outputs, then the few left over one at a time.
void forEachOutputBlock(LoopEmitter &em, int64_t numOutputs, int64_t perBlock,
                        function_ref<void(Value, int64_t)> body) {
  auto &b = em.builder();
  int64_t full = numOutputs / perBlock * perBlock;
  if (full > 0) {
    auto loop = scf::ForOp::create(b, em.index(0), em.index(full),
                                   em.index(perBlock));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(loop.getBody()->getTerminator());
    body(loop.getInductionVar(), perBlock);
  }
  for (int64_t out = full; out < numOutputs; ++out)
    body(em.index(out), 1);
}

/// The panel vectors of output block `p` at step `k` (a pair of inputs
/// when `kPack` is 2).
Value loadPanel(LoopEmitter &em, const RowRef &panel, Value k, int64_t lanes) {
  SmallVector<Value> idx(panel.prefix);
  idx.append({k, em.index(0)});
  Type element = cast<MemRefType>(panel.memref.getType()).getElementType();
  return vector::LoadOp::create(em.builder(), VectorType::get({lanes}, element),
                                panel.memref, idx);
}

/// One step of k over single-input lanes:
/// acc[m][c] += broadcast(rows[m][k]) * panel_c[k, :].
SmallVector<Value> panelStep(LoopEmitter &em, const RegisterBlock &block,
                             Value k, int64_t width, ValueRange acc) {
  auto &b = em.builder();
  auto vecType = VectorType::get({width}, em.f32());
  SmallVector<Value> w, next;
  for (const RowRef &panel : block.cols) {
    Value v = loadPanel(em, panel, k, width);
    if (!cast<VectorType>(v.getType()).getElementType().isF32())
      v = arith::ExtFOp::create(b, vecType, v);
    w.push_back(v);
  }
  for (size_t m = 0; m < block.rows.size(); ++m) {
    SmallVector<Value> idx(block.rows[m].prefix);
    idx.push_back(k);
    Value a = vector::BroadcastOp::create(b, vecType,
                                          em.load(block.rows[m].memref, idx));
    for (size_t c = 0; c < block.cols.size(); ++c)
      next.push_back(vector::FMAOp::create(b, a, w[c],
                                           acc[m * block.cols.size() + c]));
  }
  return next;
}

/// The f32 values of the odd and the even input of each 32-bit lane of
/// bf16 pairs: the high half as it is (masked), the low half shifted up.
std::pair<Value, Value> widenPairs(LoopEmitter &em, Value lanes) {
  auto &b = em.builder();
  auto vecType = VectorType::get(cast<VectorType>(lanes.getType()).getShape(),
                                 em.f32());
  Value odd = arith::BitcastOp::create(
      b, vecType,
      arith::AndIOp::create(b, lanes, em.i32Like(lanes, 0xffff0000u)));
  Value even = arith::BitcastOp::create(
      b, vecType, arith::ShLIOp::create(b, lanes, em.i32Like(lanes, 16)));
  return {odd, even};
}

/// acc + a . w over the pairs of each lane (`a`, `w`: vector<2P x bf16>):
/// vdpbf16ps, or (BF16Dot::emulate) its two f32 multiply-adds, odd input
/// first. The products of bf16 values are exact in f32, so the two agree
/// but for the instruction's flushing of denormals.
Value dotBF16Pairs(LoopEmitter &em, BF16Dot dot, Value acc, Value a,
                   Value w) {
  auto &b = em.builder();
  if (dot == BF16Dot::avx512)
    return x86vector::DotBF16Op::create(b, acc.getType(), acc, a, w);
  auto intType = VectorType::get(cast<VectorType>(acc.getType()).getShape(),
                                 b.getI32Type());
  auto [aOdd, aEven] = widenPairs(em, vector::BitCastOp::create(b, intType, a));
  auto [wOdd, wEven] = widenPairs(em, vector::BitCastOp::create(b, intType, w));
  acc = vector::FMAOp::create(b, aOdd, wOdd, acc);
  return vector::FMAOp::create(b, aEven, wEven, acc);
}

/// One step over a pair of inputs (2 kk, 2 kk + 1) of pair-packed bf16
/// panels: each 32-bit lane holds the bf16 weights of both inputs. bf16
/// activation rows: one bf16 dot product (`dot`) per accumulator. f32 rows:
/// the lanes are widened by a mask (odd input: the high half is its f32)
/// and a shift (even input) and multiplied in the instruction's order, odd
/// then even, so that both give the same sums for bf16-rounded activations.
SmallVector<Value> pairStep(LoopEmitter &em, const RegisterBlock &block,
                            Value kk, int64_t width, BF16Dot dot,
                            ValueRange acc) {
  auto &b = em.builder();
  auto vecType = VectorType::get({width}, em.f32());
  auto intType = VectorType::get({width}, b.getI32Type());
  auto pairsType = VectorType::get({2 * width}, b.getBF16Type());
  Value k0 = arith::MulIOp::create(b, kk, em.index(2));
  Value k1 = arith::AddIOp::create(b, k0, em.index(1));
  auto rowIndex = [&](size_t m, Value k) {
    SmallVector<Value> idx(block.rows[m].prefix);
    idx.push_back(k);
    return idx;
  };
  size_t numCols = block.cols.size();
  SmallVector<Value> next(acc);
  auto rowType = cast<MemRefType>(block.rows.front().memref.getType());
  if (rowType.getElementType().isBF16()) {
    assert(dot != BF16Dot::none && "bf16 rows without bf16 dot products");
    SmallVector<Value> w;
    for (const RowRef &panel : block.cols)
      w.push_back(loadPanel(em, panel, kk, 2 * width));
    for (size_t m = 0; m < block.rows.size(); ++m) {
      Value pair = vector::LoadOp::create(
          b, VectorType::get({2}, b.getBF16Type()), block.rows[m].memref,
          rowIndex(m, k0));
      Value bits = vector::ExtractOp::create(
          b,
          vector::BitCastOp::create(b, VectorType::get({1}, b.getI32Type()),
                                    pair),
          ArrayRef<int64_t>{0});
      Value a = vector::BitCastOp::create(
          b, pairsType, vector::BroadcastOp::create(b, intType, bits));
      for (size_t c = 0; c < numCols; ++c)
        next[m * numCols + c] =
            dotBF16Pairs(em, dot, next[m * numCols + c], a, w[c]);
    }
    return next;
  }
  // One panel at a time, its odd half into every row, then its even half.
  // LLVM keeps each row's two broadcasts live across the panels, so these
  // kernels block fewer rows than single-input ones (pair_row_block).
  for (size_t c = 0; c < numCols; ++c) {
    Value lanes = vector::BitCastOp::create(
        b, intType, loadPanel(em, block.cols[c], kk, 2 * width));
    auto [odd, even] = widenPairs(em, lanes);
    for (size_t m = 0; m < block.rows.size(); ++m) {
      Value a1 = vector::BroadcastOp::create(
          b, vecType, em.load(block.rows[m].memref, rowIndex(m, k1)));
      Value &sum = next[m * numCols + c];
      sum = vector::FMAOp::create(b, a1, odd, sum);
    }
    for (size_t m = 0; m < block.rows.size(); ++m) {
      Value a0 = vector::BroadcastOp::create(
          b, vecType, em.load(block.rows[m].memref, rowIndex(m, k0)));
      Value &sum = next[m * numCols + c];
      sum = vector::FMAOp::create(b, a0, even, sum);
    }
  }
  return next;
}

/// acc[m][c] = sum over k of broadcast(rows[m][k]) * panel_c[k, :], over
/// single inputs or, when `kPack` is 2, pairs of them.
SmallVector<Value> emitPanelBlock(LoopEmitter &em, const RegisterBlock &block,
                                  int64_t depth, int64_t kPack, int64_t width,
                                  BF16Dot dot) {
  auto &b = em.builder();
  auto vecType = VectorType::get({width}, em.f32());
  Value zero = arith::ConstantOp::create(
      b, vecType, DenseElementsAttr::get(vecType, b.getF32FloatAttr(0.0)));
  SmallVector<Value> init(block.rows.size() * block.cols.size(), zero);
  auto loop = scf::ForOp::create(b, em.index(0), em.index(depth / kPack),
                                 em.index(1), init);
  OpBuilder::InsertionGuard guard(b);
  Block *body = loop.getBody();
  if (!body->empty())
    body->getTerminator()->erase();
  b.setInsertionPointToEnd(body);
  Value k = loop.getInductionVar();
  ValueRange acc = loop.getRegionIterArgs();
  scf::YieldOp::create(
      b, kPack == 2 ? pairStep(em, block, k, width, dot, acc)
                    : panelStep(em, block, k, width, acc));
  return SmallVector<Value>(loop.getResults());
}
} // namespace

void mlir::moe::emitBlockedDots(
    LoopEmitter &em, Value numRows, int64_t numOutputs,
    int64_t weightsPerOutput, int64_t depth, const DotSchedule &schedule,
    function_ref<RowRef(Value)> activationRow,
    function_ref<SmallVector<RowRef>(Value)> weightRows,
    function_ref<void(Value, Value, ArrayRef<Value>)> epilogue) {
  int64_t outputsPerBlock =
      std::max<int64_t>(1, schedule.colBlock / weightsPerOutput);
  // Output blocks outside, so their weight rows stay in cache while every
  // activation row streams past.
  forEachOutputBlock(em, numOutputs, outputsPerBlock, [&](Value out0, int64_t n) {
    forEachRowBlock(em, numRows, schedule.rowBlock, [&](Value row0, int64_t m) {
      RegisterBlock block =
          gatherBlock(em, row0, m, out0, n, activationRow, weightRows);
      auto dots = emitDotBlock(em, block.rows, block.cols, em.index(0), depth,
                               schedule);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j)
          epilogue(block.rowIds[i], block.outIds[j],
                   ArrayRef<Value>(dots[i]).slice(j * weightsPerOutput,
                                                  weightsPerOutput));
    });
  });
}

void mlir::moe::emitPanelDots(
    LoopEmitter &em, Value numRows, int64_t numPanels,
    int64_t matricesPerPanel, int64_t depth, int64_t kPack,
    const DotSchedule &schedule,
    function_ref<RowRef(Value)> activationRow,
    function_ref<SmallVector<RowRef>(Value)> panelRefs,
    function_ref<void(Value, Value, ArrayRef<Value>)> epilogue) {
  auto &b = em.builder();
  auto run = [&](Value row0, int64_t m, Value panel0, int64_t n) {
    RegisterBlock block = gatherBlock(em, row0, m, panel0, n, activationRow, panelRefs);
    SmallVector<Value> acc = emitPanelBlock(em, block, depth, kPack,
                                            schedule.vectorWidth,
                                            schedule.bf16Dot);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        epilogue(block.rowIds[i], block.outIds[j],
                 ArrayRef<Value>(acc).slice(i * block.cols.size() +
                                                j * matricesPerPanel,
                                            matricesPerPanel));
  };

  // A tile of at most `streamingRows` rows (decoding, or experts with a
  // token or two) runs all its rows together against wide panel blocks:
  // enough independent accumulators, and every weight read exactly once.
  // Others block rows and panels to the register file.
  int64_t panelsPerBlock =
      std::max<int64_t>(1, schedule.colBlock / matricesPerPanel);
  Value streaming =
      arith::CmpIOp::create(b, arith::CmpIPredicate::ule, numRows,
                            em.index(schedule.streamingRows));
  em.ifThenElse(
      streaming,
      [&] {
        for (int64_t m = 1; m <= schedule.streamingRows; ++m) {
          Value exact = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                              numRows, em.index(m));
          int64_t panels = std::max<int64_t>(1, 8 / (matricesPerPanel * m));
          em.ifThen(exact, [&] {
            forEachOutputBlock(em, numPanels, panels,
                               [&](Value panel0, int64_t n) {
                                 run(em.index(0), m, panel0, n);
                               });
          });
        }
      },
      [&] {
        forEachOutputBlock(
            em, numPanels, panelsPerBlock, [&](Value panel0, int64_t n) {
              forEachRowBlock(em, numRows, kPack == 2 ? schedule.pairRowBlock : schedule.rowBlock,
                              [&](Value row0, int64_t m) {
                                run(row0, m, panel0, n);
                              });
            });
      });
}
