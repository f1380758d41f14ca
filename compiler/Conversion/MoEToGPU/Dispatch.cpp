//===- Dispatch.cpp - moe.dispatch/combine to GPU kernels -----------------===//
//
// The dispatch plan is built on the device by the CPU's counting sort
// (Emitters.h), on one thread: the row count is data, and keeping it on the
// device means no copy to the host inside a forward. The plan's buffers are
// sized for the most rows any routing can need,
//   R_max = floor((T k + E (tile - 1)) / tile) * tile,
// so the FFN kernels launch over R_max rows; rows past the real count are
// padding (slot -1, expert 0) and come out as zero. The combine runs one
// thread per token, summing its slots in choice order.
//
//===----------------------------------------------------------------------===//

#include "compiler/Conversion/MoEToGPU/KernelBuilder.h"
#include "compiler/Conversion/MoEToGPU/PopulatePatterns.h"
#include "compiler/Conversion/MoEToLoops/Emitters.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::gpu_kernels;

namespace {
struct DispatchToGPU : KernelPattern<DispatchOp> {
  using KernelPattern::KernelPattern;

  LogicalResult matchAndRewrite(DispatchOp op,
                                PatternRewriter &rewriter) const override {
    MemRefType offsetsType = bufferType(op.getExpertOffsets());
    MemRefType slotsType = bufferType(op.getSortedSlots());
    MemRefType slotRowsType = bufferType(op.getSlotRows());
    MemRefType tilesType = bufferType(op.getTileExperts());
    // dispatch(indices, offsets, sorted_slots, slot_rows, tile_experts)
    gpu::GPUFuncOp kernel = createKernel(
        rewriter, kernels, "dispatch",
        {bufferType(op.getIndices()), offsetsType, slotsType, slotRowsType,
         tilesType},
        1, op.getLoc(), [&](LoopEmitter &em, ValueRange args) {
          onFirstThread(em, [&] {
            emitDispatch(em, op, args[0], args[1], [&](Value, Value) {
              return DispatchPlan{args[2], args[3], args[4]};
            });
          });
        });

    LoopEmitter em(rewriter, op.getLoc());
    auto &b = em.builder();
    Value indices = em.toBuffer(op.getIndices());
    Value tokens = em.dim(indices, 0);
    int64_t k = op.getIndices().getType().getDimSize(1);
    int64_t tile = op.getTileRows();
    Value slots = arith::AddIOp::create(
        b, arith::MulIOp::create(b, tokens, em.index(k)),
        em.index(op.getNumExperts() * (tile - 1)));
    Value tiles = arith::DivUIOp::create(b, slots, em.index(tile));
    Value rows = arith::MulIOp::create(b, tiles, em.index(tile));
    Value offsets = deviceAlloc(em, offsetsType, {});
    Value sorted = deviceAlloc(em, slotsType, {rows});
    Value slotRows = deviceAlloc(em, slotRowsType, {tokens});
    Value tileExperts = deviceAlloc(em, tilesType, {tiles});
    launch(em, kernel, em.index(1),
           {indices, offsets, sorted, slotRows, tileExperts});
    rewriter.replaceOp(
        op, {em.toTensor(sorted, op.getSortedSlots().getType()),
             em.toTensor(slotRows, op.getSlotRows().getType()),
             em.toTensor(offsets, op.getExpertOffsets().getType()),
             em.toTensor(tileExperts, op.getTileExperts().getType())});
    return success();
  }
};

struct CombineToGPU : KernelPattern<CombineOp> {
  using KernelPattern::KernelPattern;

  LogicalResult matchAndRewrite(CombineOp op,
                                PatternRewriter &rewriter) const override {
    bool addend = bool(op.getAddend());
    MemRefType outType = bufferType(op.getOutput());
    // combine(rows, slot_rows, [addend,] out)
    SmallVector<Type> args = {bufferType(op.getRows()),
                              bufferType(op.getSlotRows())};
    if (addend)
      args.push_back(bufferType(op.getAddend()));
    args.push_back(outType);
    gpu::GPUFuncOp kernel = createKernel(
        rewriter, kernels, "combine", args, kTokenBlock, op.getLoc(),
        [&](LoopEmitter &em, ValueRange args) {
          Value slotRows = args[1];
          forThisToken(em, em.dim(slotRows, 0), [&](Value t) {
            emitCombineToken(em, args[0], slotRows,
                             addend ? args[2] : Value(), args.back(), t);
          });
        });

    LoopEmitter em(rewriter, op.getLoc());
    Value slotRows = em.toBuffer(op.getSlotRows());
    Value tokens = em.dim(slotRows, 0);
    Value out = deviceAlloc(em, outType, {tokens});
    SmallVector<Value> operands = {em.toBuffer(op.getRows()), slotRows};
    if (addend)
      operands.push_back(em.toBuffer(op.getAddend()));
    operands.push_back(out);
    launch(em, kernel, tokenBlocks(em, tokens), operands);
    rewriter.replaceOp(op, em.toTensor(out, op.getOutput().getType()));
    return success();
  }
};
} // namespace

void mlir::moe::populateDispatchToGPUPatterns(RewritePatternSet &patterns,
                                              gpu::GPUModuleOp kernels) {
  patterns.add<DispatchToGPU, CombineToGPU>(patterns.getContext(), kernels);
}
