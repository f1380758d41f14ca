//===- DotKernel.cpp - Register-blocked, vectorised dot products ----------===//

#include "compiler/Conversion/MoEToLoops/DotKernel.h"

#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

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

void mlir::moe::emitBlockedDots(
    LoopEmitter &em, Value numRows, int64_t numOutputs,
    int64_t weightsPerOutput, int64_t depth, const DotSchedule &schedule,
    function_ref<RowRef(Value)> activationRow,
    function_ref<SmallVector<RowRef>(Value)> weightRows,
    function_ref<void(Value, Value, ArrayRef<Value>)> epilogue) {
  auto &b = em.builder();
  int64_t outputsPerBlock =
      std::max<int64_t>(1, schedule.colBlock / weightsPerOutput);

  // Output blocks outside, so their weight rows stay in cache while every
  // activation row streams past.
  Value kStart = em.index(0);
  int64_t len = depth;
  auto &sink = epilogue;
  {
    auto block = [&](Value row0, int64_t rowsInBlock, Value out0, int64_t n) {
      SmallVector<Value> rowIds, outIds;
      SmallVector<RowRef> rows, cols;
      for (int64_t m = 0; m < rowsInBlock; ++m) {
        rowIds.push_back(arith::AddIOp::create(b, row0, em.index(m)));
        rows.push_back(activationRow(rowIds.back()));
      }
      for (int64_t j = 0; j < n; ++j) {
        outIds.push_back(arith::AddIOp::create(b, out0, em.index(j)));
        for (RowRef &ref : weightRows(outIds.back()))
          cols.push_back(std::move(ref));
      }
      auto dots = emitDotBlock(em, rows, cols, kStart, len, schedule);
      for (int64_t m = 0; m < rowsInBlock; ++m)
        for (int64_t j = 0; j < n; ++j)
          sink(rowIds[m], outIds[j],
               ArrayRef<Value>(dots[m]).slice(j * weightsPerOutput,
                                              weightsPerOutput));
    };
    // For one block of outputs, every row: MR-row blocks, then single rows.
    auto allRows = [&](Value out0, int64_t n) {
      Value mr = em.index(schedule.rowBlock);
      Value fullRows = arith::MulIOp::create(
          b, arith::DivUIOp::create(b, numRows, mr), mr);
      auto loop = scf::ForOp::create(b, em.index(0), fullRows, mr);
      {
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(loop.getBody()->getTerminator());
        block(loop.getInductionVar(), schedule.rowBlock, out0, n);
      }
      em.forEach(fullRows, numRows, [&](Value row) { block(row, 1, out0, n); });
    };
    int64_t fullOutputs = numOutputs / outputsPerBlock * outputsPerBlock;
    if (fullOutputs > 0) {
      auto loop = scf::ForOp::create(b, em.index(0), em.index(fullOutputs),
                                     em.index(outputsPerBlock));
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPoint(loop.getBody()->getTerminator());
      allRows(loop.getInductionVar(), outputsPerBlock);
    }
    for (int64_t out = fullOutputs; out < numOutputs; ++out)
      allRows(em.index(out), 1);
  };

}

void mlir::moe::emitPanelDots(
    LoopEmitter &em, Value numRows, int64_t numPanels,
    int64_t matricesPerPanel, int64_t depth, const DotSchedule &schedule,
    function_ref<RowRef(Value)> activationRow,
    function_ref<SmallVector<RowRef>(Value)> panelRefs,
    function_ref<void(Value, Value, ArrayRef<Value>)> epilogue) {
  auto &b = em.builder();
  int64_t width = schedule.vectorWidth;
  auto vecType = VectorType::get({width}, em.f32());
  int64_t panelsPerBlock =
      std::max<int64_t>(1, schedule.colBlock / matricesPerPanel);

  auto block = [&](Value row0, int64_t rowsInBlock, Value panel0, int64_t n) {
    SmallVector<Value> rowIds, panelIds;
    SmallVector<RowRef> rows, panels;
    for (int64_t m = 0; m < rowsInBlock; ++m) {
      rowIds.push_back(arith::AddIOp::create(b, row0, em.index(m)));
      rows.push_back(activationRow(rowIds.back()));
    }
    for (int64_t j = 0; j < n; ++j) {
      panelIds.push_back(arith::AddIOp::create(b, panel0, em.index(j)));
      for (RowRef &ref : panelRefs(panelIds.back()))
        panels.push_back(std::move(ref));
    }
    Value zero = arith::ConstantOp::create(
        b, vecType, DenseElementsAttr::get(vecType, b.getF32FloatAttr(0.0)));
    SmallVector<Value> init(rows.size() * panels.size(), zero);
    auto loop =
        scf::ForOp::create(b, em.index(0), em.index(depth), em.index(1), init);
    {
      OpBuilder::InsertionGuard guard(b);
      Block *body = loop.getBody();
      if (!body->empty())
        body->getTerminator()->erase();
      b.setInsertionPointToEnd(body);
      Value k = loop.getInductionVar();
      ValueRange acc = loop.getRegionIterArgs();
      SmallVector<Value> w, next;
      for (const RowRef &panel : panels) {
        SmallVector<Value> idx(panel.prefix);
        idx.append({k, em.index(0)});
        Type element =
            cast<MemRefType>(panel.memref.getType()).getElementType();
        Value v = vector::LoadOp::create(
            b, VectorType::get({width}, element), panel.memref, idx);
        if (!element.isF32())
          v = arith::ExtFOp::create(b, vecType, v);
        w.push_back(v);
      }
      for (size_t m = 0; m < rows.size(); ++m) {
        SmallVector<Value> idx(rows[m].prefix);
        idx.push_back(k);
        Value a = vector::BroadcastOp::create(b, vecType,
                                              em.load(rows[m].memref, idx));
        for (size_t c = 0; c < panels.size(); ++c)
          next.push_back(vector::FMAOp::create(b, a, w[c],
                                               acc[m * panels.size() + c]));
      }
      scf::YieldOp::create(b, next);
    }
    SmallVector<Value> results(loop.getResults());
    for (int64_t m = 0; m < rowsInBlock; ++m)
      for (int64_t j = 0; j < n; ++j)
        epilogue(rowIds[m], panelIds[j],
                 ArrayRef<Value>(results).slice(
                     m * panels.size() + j * matricesPerPanel,
                     matricesPerPanel));
  };

  // For one block of panels, every row: MR-row blocks, then the remaining
  // rows in power-of-two blocks (so no row runs a narrow, latency-bound
  // kernel unless it is alone).
  auto allRows = [&](Value panel0, int64_t n) {
    Value mr = em.index(schedule.rowBlock);
    Value fullRows = arith::MulIOp::create(
        b, arith::DivUIOp::create(b, numRows, mr), mr);
    auto loop = scf::ForOp::create(b, em.index(0), fullRows, mr);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPoint(loop.getBody()->getTerminator());
      block(loop.getInductionVar(), schedule.rowBlock, panel0, n);
    }
    Value rest = arith::SubIOp::create(b, numRows, fullRows);
    Value row = fullRows;
    for (int64_t size = llvm::PowerOf2Ceil(schedule.rowBlock) / 2; size >= 1;
         size /= 2) {
      Value has = arith::CmpIOp::create(
          b, arith::CmpIPredicate::ne,
          arith::AndIOp::create(b, rest, em.index(size)), em.index(0));
      Value start = row;
      em.ifThen(has, [&] { block(start, size, panel0, n); });
      row = arith::SelectOp::create(
          b, has, arith::AddIOp::create(b, row, em.index(size)), row);
    }
  };
  auto allPanels = [&](int64_t perBlock,
                       function_ref<void(Value, int64_t)> body) {
    int64_t fullPanels = numPanels / perBlock * perBlock;
    if (fullPanels > 0) {
      auto loop = scf::ForOp::create(b, em.index(0), em.index(fullPanels),
                                     em.index(perBlock));
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPoint(loop.getBody()->getTerminator());
      body(loop.getInductionVar(), perBlock);
    }
    for (int64_t p = fullPanels; p < numPanels; ++p)
      body(em.index(p), 1);
  };

  // One or two rows (decoding): wide panel blocks give each row enough
  // independent accumulators while the weights stream past once.
  int64_t streamingPanels = std::max<int64_t>(1, 8 / matricesPerPanel);
  Value streaming = arith::CmpIOp::create(
      b, arith::CmpIPredicate::ule, numRows,
      em.index(schedule.streamingRows));
  em.ifThenElse(
      streaming,
      [&] {
        allPanels(streamingPanels, [&](Value panel0, int64_t n) {
          em.forEach(0, numRows, [&](Value r) { block(r, 1, panel0, n); });
        });
      },
      [&] { allPanels(panelsPerBlock, allRows); });
}
