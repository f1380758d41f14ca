//===- PopulatePatterns.h - convert-moe-to-gpu, by op family ----*- C++ -*-===//

#ifndef MOE_COMPILER_CONVERSION_MOETOGPU_POPULATEPATTERNS_H
#define MOE_COMPILER_CONVERSION_MOETOGPU_POPULATEPATTERNS_H

#include "dialect/MoE/IR/MoEOps.h"

#include <string>

namespace mlir {
class RewritePatternSet;
namespace gpu {
class GPUModuleOp;
} // namespace gpu
namespace moe {

/// moe.expert_ffn and moe.shared_expert → gate/up and down tensor-core
/// kernels added to `kernels`, launched from where the op was.
/// How the expert FFN kernels multiply (convert-moe-to-gpu's `mma`).
enum class GPUMma {
  Sync,      // mma.sync m16n8k16, operands from global memory (sm_80+)
  Warpgroup, // wgmma.mma_async with TMA loads into shared memory (sm_90a)
};

/// The warpgroup kernels' blocking (convert-moe-to-gpu's wgmma-* options):
/// output columns per block of gate/up (per matrix) and of down, and the
/// pipeline's stages of 64 inputs.
struct WarpgroupTiles {
  int64_t gateUpCols = 64, downCols = 128, stages = 4;
};
/// Why the kernels cannot run with `tiles` (wgmma's N, the accumulators'
/// registers, the shared memory of an sm_90 block), or "" if they can.
std::string checkWarpgroupTiles(const WarpgroupTiles &tiles);

void populateExpertFFNToGPUPatterns(RewritePatternSet &patterns,
                                    gpu::GPUModuleOp kernels, GPUMma mma,
                                    const WarpgroupTiles &tiles = {});

/// moe.router, moe.topk, moe.stats → one-thread-per-token kernels (the
/// capacity and the counts: one thread).
void populateRoutingToGPUPatterns(RewritePatternSet &patterns,
                                  gpu::GPUModuleOp kernels);

/// moe.dispatch (one thread, on the device) and moe.combine (one thread
/// per token).
void populateDispatchToGPUPatterns(RewritePatternSet &patterns,
                                   gpu::GPUModuleOp kernels);

/// Whether the FFN kernels can run an op with these sizes and weights; if
/// not, an error on the op saying why (unsupported sizes, packed or f16
/// weights).
LogicalResult checkFFNForGPU(Operation *op, GPUMma mma, int64_t hidden,
                             int64_t width, int64_t tileRows,
                             int64_t weightPanel, ArrayRef<Value> weights);
LogicalResult checkExpertFFNForGPU(ExpertFFNOp op, GPUMma mma);
LogicalResult checkSharedExpertForGPU(SharedExpertOp op, GPUMma mma);

} // namespace moe
} // namespace mlir

#endif // MOE_COMPILER_CONVERSION_MOETOGPU_POPULATEPATTERNS_H
