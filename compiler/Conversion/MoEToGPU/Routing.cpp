//===- Routing.cpp - moe.router/topk/stats to GPU kernels -----------------===//
//
// The router's dot products one thread per (token, expert), then the
// per-token code of the CPU loops (compiler/Conversion/MoEToLoops/
// Emitters.h) one thread per token: the softmax, the selection. The counts
// and the capacity (a slot's rank in token order among its expert's) run as
// the dispatch's phases. All on the device, so a forward never waits for
// the host.
//
//===----------------------------------------------------------------------===//

#include "compiler/Conversion/MoEToGPU/KernelBuilder.h"
#include "compiler/Conversion/MoEToGPU/PopulatePatterns.h"
#include "compiler/Conversion/MoEToLoops/Emitters.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::gpu_kernels;

namespace {
struct RouterToGPU : KernelPattern<RouterOp> {
  using KernelPattern::KernelPattern;

  LogicalResult matchAndRewrite(RouterOp op,
                                PatternRewriter &rewriter) const override {
    int64_t hidden = op.getInput().getType().getDimSize(1);
    int64_t experts = op.getWeight().getType().getDimSize(0);
    bool softmax = op.getScoring() == ScoringFunc::softmax;
    MemRefType logitsType = bufferType(op.getLogits());
    // router_logits(x, w, logits, scores): one thread per (token, expert),
    // consecutive threads on consecutive experts of one token, so a warp
    // reads the token's row once (broadcast) and streams 32 weight rows;
    // sigmoid scores come out here too.
    gpu::GPUFuncOp logitsKernel = createKernel(
        rewriter, kernels, "router_logits",
        {bufferType(op.getInput()), bufferType(op.getWeight()), logitsType,
         logitsType},
        kTokenBlock, op.getLoc(), [&](LoopEmitter &em, ValueRange args) {
          auto &b = em.builder();
          Value x = args[0], w = args[1], logits = args[2], scores = args[3];
          Value pairs = arith::MulIOp::create(b, em.dim(x, 0), em.index(experts));
          forThisThread(em, pairs, [&](Value i) {
            Value t = arith::DivUIOp::create(b, i, em.index(experts));
            Value e = arith::RemUIOp::create(b, i, em.index(experts));
            Value dot = em.sum(
                em.index(0), em.index(hidden),
                [&](Value h) {
                  return em.mul(em.load(x, {t, h}), em.load(w, {e, h}));
                },
                /*fast=*/false);
            em.store(dot, logits, {t, e});
            if (!softmax)
              em.store(em.sigmoid(dot), scores, {t, e});
          });
        });
    // router_softmax(logits, scores): one thread per token.
    gpu::GPUFuncOp softmaxKernel;
    if (softmax)
      softmaxKernel = createKernel(
          rewriter, kernels, "router_softmax", {logitsType, logitsType},
          kTokenBlock, op.getLoc(), [&](LoopEmitter &em, ValueRange args) {
            forThisToken(em, em.dim(args[0], 0), [&](Value t) {
              emitSoftmaxRow(em, args[0], args[1], t, em.index(experts));
            });
          });

    LoopEmitter em(rewriter, op.getLoc());
    Value x = em.toBuffer(op.getInput());
    Value tokens = em.dim(x, 0);
    Value logits = deviceAlloc(em, logitsType, {tokens});
    Value scores = deviceAlloc(em, logitsType, {tokens});
    launch(em, logitsKernel,
           tokenBlocks(em, arith::MulIOp::create(em.builder(), tokens,
                                                 em.index(experts))),
           {x, em.toBuffer(op.getWeight()), logits, scores});
    if (softmax)
      launch(em, softmaxKernel, tokenBlocks(em, tokens), {logits, scores});
    rewriter.replaceOp(op, {em.toTensor(logits, op.getLogits().getType()),
                            em.toTensor(scores, op.getScores().getType())});
    return success();
  }
};

struct TopKToGPU : KernelPattern<TopKOp> {
  using KernelPattern::KernelPattern;

  LogicalResult matchAndRewrite(TopKOp op,
                                PatternRewriter &rewriter) const override {
    bool biased = bool(op.getSelectionBias());
    MemRefType weightsType = bufferType(op.getWeights());
    MemRefType indicesType = bufferType(op.getIndices());
    // topk(scores, [bias,] weights, indices)
    SmallVector<Type> args = {bufferType(op.getScores())};
    if (biased)
      args.push_back(bufferType(op.getSelectionBias()));
    args.append({weightsType, indicesType});
    gpu::GPUFuncOp select = createKernel(
        rewriter, kernels, "topk", args, kTokenBlock, op.getLoc(),
        [&](LoopEmitter &em, ValueRange args) {
          Value scores = args[0];
          Value bias = biased ? args[1] : Value();
          Value weights = args[args.size() - 2], indices = args.back();
          SelectionScratch scratch = allocSelectionScratch(em, op);
          forThisToken(em, em.dim(scores, 0), [&](Value t) {
            emitTopKRow(em, op, scratch, scores, t, bias, weights, indices, t);
          });
        });
    // The capacity as the dispatch's phases: a histogram per chunk of
    // slots, ranks per expert, then each chunk drops the slots ranked at or
    // past the capacity (token order, as the CPU).
    int64_t numExperts = op.getScores().getType().getDimSize(1);
    MemRefType countsType = chunkCountsType(getContext(), numExperts);
    gpu::GPUFuncOp histogram, ranks, capacity;
    if (op.getCapacity() > 0) {
      histogram = createChunkHistogramKernel(rewriter, kernels,
                                             "capacity_histogram", indicesType,
                                             numExperts, op.getLoc());
      ranks = createKernel(
          rewriter, kernels, "capacity_ranks", {countsType}, kTokenBlock,
          op.getLoc(), [&](LoopEmitter &em, ValueRange args) {
            forThisThread(em, em.index(numExperts),
                          [&](Value e) { emitChunkRanks(em, args[0], e); });
          });
      capacity = createKernel(
          rewriter, kernels, "capacity_apply",
          {weightsType, indicesType, countsType}, kTokenBlock, op.getLoc(),
          [&](LoopEmitter &em, ValueRange args) {
            forThisThread(em, em.dim(args[2], 0), [&](Value c) {
              emitChunkCapacity(em, args[1], args[0], args[2], c,
                                op.getCapacity());
            });
          });
    }

    LoopEmitter em(rewriter, op.getLoc());
    Value scores = em.toBuffer(op.getScores());
    Value tokens = em.dim(scores, 0);
    Value weights = deviceAlloc(em, weightsType, {tokens});
    Value indices = deviceAlloc(em, indicesType, {tokens});
    SmallVector<Value> operands = {scores};
    if (biased)
      operands.push_back(em.toBuffer(op.getSelectionBias()));
    operands.append({weights, indices});
    launch(em, select, tokenBlocks(em, tokens), operands);
    if (capacity) {
      Value chunks = emitSlotChunks(em, indices);
      Value counts = deviceAlloc(em, countsType, {chunks});
      Value chunkBlocks = tokenBlocks(em, chunks);
      launch(em, histogram, chunkBlocks, {indices, counts});
      launch(em, ranks, tokenBlocks(em, em.index(numExperts)), {counts});
      launch(em, capacity, chunkBlocks, {weights, indices, counts});
      gpu::DeallocOp::create(em.builder(), /*asyncToken=*/Type(), ValueRange{},
                             counts);
    }
    rewriter.replaceOp(op, {em.toTensor(weights, op.getWeights().getType()),
                            em.toTensor(indices, op.getIndices().getType())});
    return success();
  }
};

/// The counts as the dispatch takes them: a histogram per chunk of slots
/// (one thread each), then one thread per expert sums its column.
struct StatsToGPU : KernelPattern<StatsOp> {
  using KernelPattern::KernelPattern;

  LogicalResult matchAndRewrite(StatsOp op,
                                PatternRewriter &rewriter) const override {
    MemRefType countsType = bufferType(op.getTokensPerExpert());
    int64_t numExperts = countsType.getDimSize(0);
    MemRefType scratchType = chunkCountsType(getContext(), numExperts);
    gpu::GPUFuncOp histogram = createChunkHistogramKernel(
        rewriter, kernels, "stats_histogram", bufferType(op.getIndices()),
        numExperts, op.getLoc());
    gpu::GPUFuncOp totals = createKernel(
        rewriter, kernels, "stats_totals", {scratchType, countsType},
        kTokenBlock, op.getLoc(), [&](LoopEmitter &em, ValueRange args) {
          auto &b = em.builder();
          forThisThread(em, em.index(numExperts), [&](Value e) {
            Value total = emitChunkRanks(em, args[0], e);
            em.store(arith::ExtSIOp::create(b, countsType.getElementType(),
                                            total),
                     args[1], {e});
          });
        });
    LoopEmitter em(rewriter, op.getLoc());
    Value indices = em.toBuffer(op.getIndices());
    Value chunks = emitSlotChunks(em, indices);
    Value chunkCounts = deviceAlloc(em, scratchType, {chunks});
    Value counts = deviceAlloc(em, countsType, {});
    launch(em, histogram, tokenBlocks(em, chunks), {indices, chunkCounts});
    launch(em, totals, tokenBlocks(em, em.index(numExperts)),
           {chunkCounts, counts});
    gpu::DeallocOp::create(em.builder(), /*asyncToken=*/Type(), ValueRange{},
                           chunkCounts);
    rewriter.replaceOp(op,
                       em.toTensor(counts, op.getTokensPerExpert().getType()));
    return success();
  }
};
} // namespace

void mlir::moe::populateRoutingToGPUPatterns(RewritePatternSet &patterns,
                                             gpu::GPUModuleOp kernels) {
  patterns.add<RouterToGPU, TopKToGPU, StatsToGPU>(patterns.getContext(),
                                                   kernels);
}
