//===- Pipelines.h - moec's compilation pipelines ---------------*- C++ -*-===//

#ifndef MOE_COMPILER_PIPELINES_PIPELINES_H
#define MOE_COMPILER_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

namespace mlir {
class OpPassManager;
namespace moe {

struct MoECPUPipelineOptions
    : public PassPipelineOptions<MoECPUPipelineOptions> {};

/// moe.layer on tensors → scf loops over memrefs, the entry function taking
/// its outputs as trailing out-parameters (moec's `--emit=linalg` stage).
void buildMoECPUToLoopsPipeline(OpPassManager &pm,
                                const MoECPUPipelineOptions &options);

/// Loops over memrefs → the LLVM dialect.
void buildMoELoopsToLLVMPipeline(OpPassManager &pm);

/// The whole CPU pipeline: both of the above.
void buildMoECPUPipeline(OpPassManager &pm,
                         const MoECPUPipelineOptions &options);

/// Registers `moe-cpu-pipeline` and `moe-cpu-to-loops-pipeline`.
void registerMoEPipelines();

} // namespace moe
} // namespace mlir

#endif // MOE_COMPILER_PIPELINES_PIPELINES_H
