//===- PopulatePatterns.h - convert-moe-to-gpu, by op family ----*- C++ -*-===//

#ifndef MOE_COMPILER_CONVERSION_MOETOGPU_POPULATEPATTERNS_H
#define MOE_COMPILER_CONVERSION_MOETOGPU_POPULATEPATTERNS_H

#include "dialect/MoE/IR/MoEOps.h"

namespace mlir {
class RewritePatternSet;
namespace gpu {
class GPUModuleOp;
} // namespace gpu
namespace moe {

/// moe.expert_ffn → gate/up and down tensor-core kernels added to `kernels`,
/// launched from where the op was.
void populateExpertFFNToGPUPatterns(RewritePatternSet &patterns,
                                    gpu::GPUModuleOp kernels);

/// Whether the GPU kernels can run `op`; if not, an error on the op saying
/// why (unsupported sizes, packed or f16 weights).
LogicalResult checkExpertFFNForGPU(ExpertFFNOp op);

} // namespace moe
} // namespace mlir

#endif // MOE_COMPILER_CONVERSION_MOETOGPU_POPULATEPATTERNS_H
