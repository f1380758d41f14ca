//===- Dispatch.cpp - moe.dispatch/combine to GPU kernels -----------------===//
//
// The dispatch plan is built on the device by the CPU's counting sort, its
// phases (Emitters.h) spread over threads: a histogram per chunk of slots,
// ranks per expert and the padded offsets in one block, a scatter per
// chunk. The row count is data, and keeping it on the device means no copy
// to the host inside a forward. The plan's buffers are sized for the most
// rows any routing can need,
//   R_max = floor((T k + E (tile - 1)) / tile) * tile,
// so the FFN kernels launch over R_max rows; rows past the real count are
// padding (slot -1, expert 0) and come out as zero. The combine runs one
// thread per output element, summing its token's slots in choice order.
//
//===----------------------------------------------------------------------===//

#include "compiler/Conversion/MoEToGPU/KernelBuilder.h"
#include "compiler/Conversion/MoEToGPU/PopulatePatterns.h"
#include "compiler/Conversion/MoEToLoops/Emitters.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::gpu_kernels;

namespace {
/// Threads of the one-block kernel that scans over the experts.
constexpr int64_t kExpertBlock = 256;

struct DispatchToGPU : KernelPattern<DispatchOp> {
  using KernelPattern::KernelPattern;

  LogicalResult matchAndRewrite(DispatchOp op,
                                PatternRewriter &rewriter) const override {
    MemRefType indicesType = bufferType(op.getIndices());
    MemRefType offsetsType = bufferType(op.getExpertOffsets());
    MemRefType slotsType = bufferType(op.getSortedSlots());
    MemRefType slotRowsType = bufferType(op.getSlotRows());
    MemRefType tilesType = bufferType(op.getTileExperts());
    int64_t numExperts = op.getNumExperts();
    int64_t tile = op.getTileRows();
    MemRefType countsType = chunkCountsType(getContext(), numExperts);

    gpu::GPUFuncOp histogram = createChunkHistogramKernel(
        rewriter, kernels, "dispatch_histogram", indicesType, numExperts,
        op.getLoc());
    // dispatch_offsets(chunk_counts, offsets, sorted_slots, tile_experts):
    // one block; ranks and the fills, then the offsets on one thread, then
    // the tile table.
    gpu::GPUFuncOp offsetsKernel = createKernel(
        rewriter, kernels, "dispatch_offsets",
        {countsType, offsetsType, slotsType, tilesType}, kExpertBlock,
        op.getLoc(), [&](LoopEmitter &em, ValueRange args) {
          auto &b = em.builder();
          Value counts = args[0], offsets = args[1];
          Value experts = em.index(numExperts);
          forEachOfBlock(em, kExpertBlock, experts, [&](Value e) {
            Value total = emitChunkRanks(em, counts, e);
            em.store(total, offsets,
                     {arith::AddIOp::create(b, e, em.index(1))});
          });
          forEachOfBlock(em, kExpertBlock, em.dim(args[2], 0), [&](Value r) {
            em.store(em.i32(-1), args[2], {r});
          });
          forEachOfBlock(em, kExpertBlock, em.dim(args[3], 0), [&](Value i) {
            em.store(em.i32(0), args[3], {i});
          });
          blockBarrier(em);
          onFirstThread(em, [&] { emitPaddedOffsets(em, offsets, tile); });
          blockBarrier(em);
          forEachOfBlock(em, kExpertBlock, experts, [&](Value e) {
            emitExpertTiles(em, offsets, args[3], e, tile);
          });
        });
    // dispatch_scatter(indices, chunk_counts, offsets, sorted_slots,
    // slot_rows): one thread per chunk.
    gpu::GPUFuncOp scatter = createKernel(
        rewriter, kernels, "dispatch_scatter",
        {indicesType, countsType, offsetsType, slotsType, slotRowsType},
        kTokenBlock, op.getLoc(), [&](LoopEmitter &em, ValueRange args) {
          forThisThread(em, em.dim(args[1], 0), [&](Value c) {
            emitChunkScatter(em, args[0], args[1], args[2],
                             DispatchPlan{args[3], args[4], Value()}, c);
          });
        });

    LoopEmitter em(rewriter, op.getLoc());
    auto &b = em.builder();
    Value indices = em.toBuffer(op.getIndices());
    Value tokens = em.dim(indices, 0);
    int64_t k = op.getIndices().getType().getDimSize(1);
    Value slots = arith::AddIOp::create(
        b, arith::MulIOp::create(b, tokens, em.index(k)),
        em.index(numExperts * (tile - 1)));
    Value tiles = arith::DivUIOp::create(b, slots, em.index(tile));
    Value rows = arith::MulIOp::create(b, tiles, em.index(tile));
    Value chunks = emitSlotChunks(em, indices);
    Value counts = deviceAlloc(em, countsType, {chunks});
    Value offsets = deviceAlloc(em, offsetsType, {});
    Value sorted = deviceAlloc(em, slotsType, {rows});
    Value slotRows = deviceAlloc(em, slotRowsType, {tokens});
    Value tileExperts = deviceAlloc(em, tilesType, {tiles});
    Value chunkBlocks = tokenBlocks(em, chunks);
    launch(em, histogram, chunkBlocks, {indices, counts});
    launch(em, offsetsKernel, em.index(1),
           {counts, offsets, sorted, tileExperts});
    launch(em, scatter, chunkBlocks,
           {indices, counts, offsets, sorted, slotRows});
    gpu::DeallocOp::create(b, /*asyncToken=*/Type(), ValueRange{}, counts);
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
          auto &b = em.builder();
          // Block x = token t, block y and thread = column h: a warp reads
          // 32 consecutive columns of each row.
          Value t = gpu::BlockIdOp::create(b, gpu::Dimension::x);
          Value h = arith::AddIOp::create(
              b,
              arith::MulIOp::create(
                  b, gpu::BlockIdOp::create(b, gpu::Dimension::y),
                  em.index(kTokenBlock)),
              gpu::ThreadIdOp::create(b, gpu::Dimension::x));
          Value out = args.back();
          em.ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::ult, h,
                                          em.dim(out, 1)),
                    [&] {
                      em.store(emitCombineElement(em, args[0], args[1],
                                                  addend ? args[2] : Value(),
                                                  t, h),
                               out, {t, h});
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
    if (outType.isDynamicDim(1))
      return rewriter.notifyMatchFailure(op, "the hidden size must be static");
    int64_t hidden = outType.getDimSize(1);
    launch(em, kernel, tokens, operands,
           em.index((hidden + kTokenBlock - 1) / kTokenBlock));
    rewriter.replaceOp(op, em.toTensor(out, op.getOutput().getType()));
    return success();
  }
};
} // namespace

void mlir::moe::populateDispatchToGPUPatterns(RewritePatternSet &patterns,
                                              gpu::GPUModuleOp kernels) {
  patterns.add<DispatchToGPU, CombineToGPU>(patterns.getContext(), kernels);
}
