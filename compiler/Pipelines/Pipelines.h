//===- Pipelines.h - moec's compilation pipelines ---------------*- C++ -*-===//

#ifndef MOE_COMPILER_PIPELINES_PIPELINES_H
#define MOE_COMPILER_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

namespace mlir {
class OpPassManager;
namespace moe {

/// Schedule choices of the CPU pipeline (defaults: AVX2, see DotKernel.h).
struct MoECPUPipelineOptions
    : public PassPipelineOptions<MoECPUPipelineOptions> {
  Option<int64_t> vectorWidth{*this, "vector-width",
                              llvm::cl::desc("f32 lanes per vector register"),
                              llvm::cl::init(8)};
  Option<int64_t> rowBlock{*this, "row-block",
                           llvm::cl::desc("activation rows per register block"),
                           llvm::cl::init(6)};
  Option<int64_t> colBlock{*this, "col-block",
                           llvm::cl::desc("weight rows per register block"),
                           llvm::cl::init(2)};
  Option<int64_t> streamingRows{
      *this, "streaming-rows",
      llvm::cl::desc("tiles with at most this many rows run the "
                     "weight-streaming kernel"),
      llvm::cl::init(2)};
};

/// moe.layer → the primitives, with the FFN weights the function receives
/// packed into panels of `vector-width` outputs (moe-pack-weights). moec
/// reads the layer's ABI metadata after this stage.
void buildMoECPUPreparePipeline(OpPassManager &pm,
                                const MoECPUPipelineOptions &options);

/// The primitives on tensors → scf loops over memrefs, the entry function
/// taking its outputs as trailing out-parameters (`--emit=linalg`).
void buildMoECPUToLoopsPipeline(OpPassManager &pm,
                                const MoECPUPipelineOptions &options);

/// Loops over memrefs → the LLVM dialect.
void buildMoELoopsToLLVMPipeline(OpPassManager &pm);

/// The whole CPU pipeline: the three above.
void buildMoECPUPipeline(OpPassManager &pm,
                         const MoECPUPipelineOptions &options);

/// Registers `moe-cpu-pipeline` and `moe-cpu-to-loops-pipeline`.
void registerMoEPipelines();

} // namespace moe
} // namespace mlir

#endif // MOE_COMPILER_PIPELINES_PIPELINES_H
