//===- Routing.cpp - moe.router/topk/stats to GPU kernels -----------------===//
//
// The router's logits as a tiled f32 matmul (shared memory, a block per
// 64 x 64 tile; sigmoid scores in its epilogue), then the per-token code of
// the CPU loops (compiler/Conversion/MoEToLoops/Emitters.h) one thread per
// token: the softmax and the selection, in one kernel when nothing else
// reads the scores. The counts and the capacity (a slot's rank in token order
// among its expert's) run as the dispatch's phases. All on the device, so a
// forward never waits for the host.
//
//===----------------------------------------------------------------------===//

#include "compiler/Conversion/MoEToGPU/KernelBuilder.h"
#include "compiler/Conversion/MoEToGPU/PopulatePatterns.h"
#include "compiler/Conversion/MoEToLoops/Emitters.h"

#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::gpu_kernels;

namespace {
/// The router tile: a block of kRouterThreads threads computes the logits of
/// kRouterTile tokens by kRouterTile experts, each thread kPerThread x
/// kPerThread of them, over chunks of kRouterChunk inputs.
constexpr int64_t kRouterTile = 64, kRouterChunk = 32, kRouterThreads = 256;
constexpr int64_t kThreadsPerRow = 16, kPerThread = kRouterTile / 16;
static_assert(kThreadsPerRow * kThreadsPerRow == kRouterThreads);
static_assert(kRouterTile * kRouterChunk % kRouterThreads == 0);

/// router_logits(x, w, logits[, scores]): logits = x w^T (f32), and the
/// sigmoid scores when `sigmoid`. Each chunk of x's tile rows and w's tile rows is
/// staged in shared memory (coalesced loads, out-of-range elements zero),
/// so each operand is read from global memory once per block rather than
/// once per output. Thread (ty, tx) owns tokens ty + 16 i and experts
/// tx + 16 j (conflict-free shared reads: the rows are 33 floats apart).
/// Every logit adds its products in increasing input order, so the result
/// does not depend on the launch.
gpu::GPUFuncOp createRouterLogitsKernel(OpBuilder &builder,
                                        gpu::GPUModuleOp kernels, RouterOp op,
                                        bool sigmoid) {
  MemRefType logitsType = bufferType(op.getLogits());
  int64_t hidden = op.getInput().getType().getDimSize(1);
  int64_t experts = op.getWeight().getType().getDimSize(0);
  SmallVector<Type> args = {bufferType(op.getInput()),
                            bufferType(op.getWeight()), logitsType};
  if (sigmoid)
    args.push_back(logitsType);
  return createKernel(
      builder, kernels, "router_logits", args, kRouterThreads, op.getLoc(),
      [&](LoopEmitter &em, ValueRange args) {
        auto &b = em.builder();
        Value x = args[0], w = args[1], logits = args[2];
        Value scores = sigmoid ? args[3] : Value();
        auto func = cast<gpu::GPUFuncOp>(b.getInsertionBlock()->getParentOp());
        auto shared = MemRefType::get(
            {kRouterTile, kRouterChunk + 1}, em.f32(), MemRefLayoutAttrInterface(),
            gpu::AddressSpaceAttr::get(b.getContext(),
                                       gpu::AddressSpace::Workgroup));
        Value xs = func.addWorkgroupAttribution(shared, op.getLoc());
        Value ws = func.addWorkgroupAttribution(shared, op.getLoc());

        Value tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
        Value ty = arith::DivUIOp::create(b, tid, em.index(kThreadsPerRow));
        Value tx = arith::RemUIOp::create(b, tid, em.index(kThreadsPerRow));
        Value t0 = arith::MulIOp::create(
            b, gpu::BlockIdOp::create(b, gpu::Dimension::x),
            em.index(kRouterTile));
        Value e0 = arith::MulIOp::create(
            b, gpu::BlockIdOp::create(b, gpu::Dimension::y),
            em.index(kRouterTile));
        Value tokens = em.dim(x, 0);
        auto below = [&](Value v, Value bound) {
          return arith::CmpIOp::create(b, arith::CmpIPredicate::ult, v, bound);
        };
        // src[min(row0 + row, rows - 1)][k] into dst[row][col], zero where
        // the row or k is out of range.
        auto stage = [&](Value src, Value dst, Value row0, Value rows,
                         Value k0) {
          Value lastRow = arith::SubIOp::create(b, rows, em.index(1));
          for (int64_t r = 0; r < kRouterTile * kRouterChunk / kRouterThreads;
               ++r) {
            Value id = arith::AddIOp::create(
                b, tid, em.index(r * kRouterThreads));
            Value row = arith::DivUIOp::create(b, id, em.index(kRouterChunk));
            Value col = arith::RemUIOp::create(b, id, em.index(kRouterChunk));
            Value at = arith::AddIOp::create(b, row0, row);
            Value k = arith::AddIOp::create(b, k0, col);
            Value valid = arith::AndIOp::create(b, below(at, rows),
                                                below(k, em.index(hidden)));
            Value v = em.load(
                src, {arith::MinUIOp::create(b, at, lastRow),
                      arith::MinUIOp::create(b, k, em.index(hidden - 1))});
            em.store(arith::SelectOp::create(b, valid, v, em.f32(0.0)), dst,
                     {row, col});
          }
        };

        SmallVector<Value> init(kPerThread * kPerThread, em.f32(0.0));
        int64_t chunks = llvm::divideCeilSigned(hidden, kRouterChunk);
        SmallVector<Value> acc = em.reduce(
            em.index(0), em.index(chunks), init,
            [&](Value c, ValueRange sums) -> SmallVector<Value> {
              Value k0 = arith::MulIOp::create(b, c, em.index(kRouterChunk));
              stage(x, xs, t0, tokens, k0);
              stage(w, ws, e0, em.index(experts), k0);
              blockBarrier(em);
              SmallVector<Value> next = em.reduce(
                  em.index(0), em.index(kRouterChunk), sums,
                  [&](Value kk, ValueRange part) -> SmallVector<Value> {
                    SmallVector<Value> a, wv, out;
                    for (int64_t i = 0; i < kPerThread; ++i) {
                      Value offset = em.index(i * kThreadsPerRow);
                      a.push_back(em.load(
                          xs, {arith::AddIOp::create(b, ty, offset), kk}));
                      wv.push_back(em.load(
                          ws, {arith::AddIOp::create(b, tx, offset), kk}));
                    }
                    // Fused multiply-adds, one rounding per product.
                    for (int64_t i = 0; i < kPerThread; ++i)
                      for (int64_t j = 0; j < kPerThread; ++j)
                        out.push_back(math::FmaOp::create(
                            b, a[i], wv[j], part[i * kPerThread + j]));
                    return out;
                  });
              // The next chunk overwrites the tiles.
              blockBarrier(em);
              return next;
            });
        for (int64_t i = 0; i < kPerThread; ++i)
          for (int64_t j = 0; j < kPerThread; ++j) {
            Value t = arith::AddIOp::create(
                b, t0,
                arith::AddIOp::create(b, ty, em.index(i * kThreadsPerRow)));
            Value e = arith::AddIOp::create(
                b, e0,
                arith::AddIOp::create(b, tx, em.index(j * kThreadsPerRow)));
            Value dot = acc[i * kPerThread + j];
            em.ifThen(arith::AndIOp::create(b, below(t, tokens),
                                            below(e, em.index(experts))),
                      [&] {
                        em.store(dot, logits, {t, e});
                        if (sigmoid)
                          em.store(em.sigmoid(dot), scores, {t, e});
                      });
          }
      });
}

/// Host side: the router's logits (and its sigmoid scores) on the device.
std::pair<Value, Value> emitRouterLogits(LoopEmitter &em, OpBuilder &builder,
                                         gpu::GPUModuleOp kernels,
                                         RouterOp op) {
  bool sigmoid = op.getScoring() == ScoringFunc::sigmoid;
  int64_t experts = op.getWeight().getType().getDimSize(0);
  MemRefType logitsType = bufferType(op.getLogits());
  gpu::GPUFuncOp kernel =
      createRouterLogitsKernel(builder, kernels, op, sigmoid);
  Value x = em.toBuffer(op.getInput());
  Value tokens = em.dim(x, 0);
  Value logits = deviceAlloc(em, logitsType, {tokens});
  Value scores = sigmoid ? deviceAlloc(em, logitsType, {tokens}) : Value();
  SmallVector<Value> operands = {x, em.toBuffer(op.getWeight()), logits};
  if (scores)
    operands.push_back(scores);
  launch(em, kernel,
         arith::CeilDivUIOp::create(em.builder(), tokens,
                                    em.index(kRouterTile)),
         operands, em.index(llvm::divideCeilSigned(experts, kRouterTile)));
  return {logits, scores};
}

struct RouterToGPU : KernelPattern<RouterOp> {
  using KernelPattern::KernelPattern;

  LogicalResult matchAndRewrite(RouterOp op,
                                PatternRewriter &rewriter) const override {
    int64_t experts = op.getWeight().getType().getDimSize(0);
    MemRefType logitsType = bufferType(op.getLogits());
    LoopEmitter em(rewriter, op.getLoc());
    auto [logits, scores] = emitRouterLogits(em, rewriter, kernels, op);
    if (!scores) {
      // router_softmax(logits, scores): one thread per token.
      gpu::GPUFuncOp softmax = createKernel(
          rewriter, kernels, "router_softmax", {logitsType, logitsType},
          kTokenBlock, op.getLoc(), [&](LoopEmitter &em, ValueRange args) {
            forThisToken(em, em.dim(args[0], 0), [&](Value t) {
              emitSoftmaxRow(em, args[0], args[1], t, em.index(experts));
            });
          });
      Value tokens = em.dim(logits, 0);
      scores = deviceAlloc(em, logitsType, {tokens});
      launch(em, softmax, tokenBlocks(em, tokens), {logits, scores});
    }
    rewriter.replaceOp(op, {em.toTensor(logits, op.getLogits().getType()),
                            em.toTensor(scores, op.getScores().getType())});
    return success();
  }
};

/// moe.topk's selection and capacity phases, launched where `em` is:
/// `topk` reads the scores `input` ([T, E]); with `softmax`, `input` holds
/// the logits and `router_softmax_topk` scores each token in the same
/// thread before selecting (the CPU's code either way). Returns the
/// weights and indices buffers.
std::pair<Value, Value> emitTopK(LoopEmitter &em, OpBuilder &builder,
                                 gpu::GPUModuleOp kernels, TopKOp op,
                                 Value input, bool softmax) {
  bool biased = bool(op.getSelectionBias());
  int64_t numExperts = op.getScores().getType().getDimSize(1);
  MemRefType weightsType = bufferType(op.getWeights());
  MemRefType indicesType = bufferType(op.getIndices());
  // topk(scores, [bias,] weights, indices)
  SmallVector<Type> args = {bufferType(op.getScores())};
  if (biased)
    args.push_back(bufferType(op.getSelectionBias()));
  args.append({weightsType, indicesType});
  gpu::GPUFuncOp select = createKernel(
      builder, kernels, softmax ? "router_softmax_topk" : "topk", args,
      kTokenBlock, op.getLoc(), [&](LoopEmitter &em, ValueRange args) {
        Value scores = args[0];
        Value bias = biased ? args[1] : Value();
        Value weights = args[args.size() - 2], indices = args.back();
        SelectionScratch scratch = allocSelectionScratch(em, op);
        Value row = softmax ? em.scratch(MemRefType::get({1, numExperts},
                                                         em.f32()))
                            : Value();
        forThisToken(em, em.dim(scores, 0), [&](Value t) {
          if (!softmax)
            return emitTopKRow(em, op, scratch, scores, t, bias, weights,
                               indices, t);
          Value first = em.index(0);
          emitSoftmaxRow(em, scores, t, row, first, em.index(numExperts));
          emitTopKRow(em, op, scratch, row, first, bias, weights, indices, t);
        });
      });
  // The capacity as the dispatch's phases: a histogram per chunk of
  // slots, ranks per expert, then each chunk drops the slots ranked at or
  // past the capacity (token order, as the CPU).
  MemRefType countsType = chunkCountsType(builder.getContext(), numExperts);
  gpu::GPUFuncOp histogram, ranks, capacity;
  if (op.getCapacity() > 0) {
    histogram = createChunkHistogramKernel(builder, kernels,
                                           "capacity_histogram", indicesType,
                                           numExperts, op.getLoc());
    ranks = createKernel(
        builder, kernels, "capacity_ranks", {countsType}, kTokenBlock,
        op.getLoc(), [&](LoopEmitter &em, ValueRange args) {
          forThisThread(em, em.index(numExperts),
                        [&](Value e) { emitChunkRanks(em, args[0], e); });
        });
    capacity = createKernel(
        builder, kernels, "capacity_apply",
        {weightsType, indicesType, countsType}, kTokenBlock, op.getLoc(),
        [&](LoopEmitter &em, ValueRange args) {
          forThisThread(em, em.dim(args[2], 0), [&](Value c) {
            emitChunkCapacity(em, args[1], args[0], args[2], c,
                              op.getCapacity());
          });
        });
  }

  Value tokens = em.dim(input, 0);
  Value weights = deviceAlloc(em, weightsType, {tokens});
  Value indices = deviceAlloc(em, indicesType, {tokens});
  SmallVector<Value> operands = {input};
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
  return {weights, indices};
}

struct TopKToGPU : KernelPattern<TopKOp> {
  using KernelPattern::KernelPattern;

  LogicalResult matchAndRewrite(TopKOp op,
                                PatternRewriter &rewriter) const override {
    LoopEmitter em(rewriter, op.getLoc());
    auto [weights, indices] =
        emitTopK(em, rewriter, kernels, op, em.toBuffer(op.getScores()),
                 /*softmax=*/false);
    rewriter.replaceOp(op, {em.toTensor(weights, op.getWeights().getType()),
                            em.toTensor(indices, op.getIndices().getType())});
    return success();
  }
};

/// A softmax moe.router whose only reader is a moe.topk (no aux loss, as
/// the CPU's fused routing): the logits kernel, then the scoring and the
/// selection in one kernel per token, so the [T, E] scores never reach
/// memory and one launch goes. Rooted at the router, which the conversion
/// visits first; the selection bias must be defined before it.
struct FusedRoutingToGPU : KernelPattern<RouterOp> {
  FusedRoutingToGPU(MLIRContext *context, gpu::GPUModuleOp kernels)
      : KernelPattern(context, kernels, /*benefit=*/2) {}

  LogicalResult matchAndRewrite(RouterOp router,
                                PatternRewriter &rewriter) const override {
    if (router.getScoring() != ScoringFunc::softmax)
      return rewriter.notifyMatchFailure(router, "sigmoid scores are fused "
                                                 "into the logits kernel");
    TopKOp op = matchFusedRouting(router, rewriter);
    if (!op)
      return failure();
    LoopEmitter em(rewriter, router.getLoc());
    Value logits = emitRouterLogits(em, rewriter, kernels, router).first;
    auto [weights, indices] =
        emitTopK(em, rewriter, kernels, op, logits, /*softmax=*/true);
    gpu::DeallocOp::create(em.builder(), /*asyncToken=*/Type(), ValueRange{},
                           logits);
    rewriter.replaceOp(op, {em.toTensor(weights, op.getWeights().getType()),
                            em.toTensor(indices, op.getIndices().getType())});
    rewriter.eraseOp(router);
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
  patterns.add<FusedRoutingToGPU, RouterToGPU, TopKToGPU, StatsToGPU>(
      patterns.getContext(), kernels);
}
