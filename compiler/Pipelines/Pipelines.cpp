//===- Pipelines.cpp - moec's compilation pipelines -----------------------===//

#include "compiler/Pipelines/Pipelines.h"

#include "compiler/Conversion/Passes.h"
#include "dialect/MoE/Transforms/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;
using namespace mlir::moe;

void mlir::moe::buildMoECPUPreparePipeline(
    OpPassManager &pm, const MoECPUPipelineOptions &options) {
  OpPassManager &funcPm = pm.nest<func::FuncOp>();
  funcPm.addPass(createMoEDecomposeLayerPass());
  MoEPackWeightsPassOptions pack;
  pack.panel = options.vectorWidth;
  pack.kPack = options.kPack;
  funcPm.addPass(createMoEPackWeightsPass(pack));
}

void mlir::moe::buildMoECPUToLoopsPipeline(
    OpPassManager &pm, const MoECPUPipelineOptions &options) {
  OpPassManager &funcPm = pm.nest<func::FuncOp>();
  ConvertMoEToLoopsPassOptions loops;
  loops.vectorWidth = options.vectorWidth;
  loops.rowBlock = options.rowBlock;
  loops.colBlock = options.colBlock;
  loops.streamingRows = options.streamingRows;
  loops.pairRowBlock = options.pairRowBlock;
  loops.bf16Dot = options.bf16Dot;
  funcPm.addPass(createConvertMoEToLoopsPass(loops));
  funcPm.addPass(createCanonicalizerPass());
  funcPm.addPass(createCSEPass());

  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = true;
  bufferize.functionBoundaryTypeConversion =
      bufferization::LayoutMapOption::IdentityLayoutMap;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));

  // The runtime owns the outputs: results become trailing out-parameters.
  bufferization::BufferResultsToOutParamsPassOptions outParams;
  outParams.modifyPublicFunctions = true;
  outParams.hoistStaticAllocs = true;
  pm.addPass(bufferization::createBufferResultsToOutParamsPass(outParams));
  bufferization::buildBufferDeallocationPipeline(pm);
  pm.addPass(createConvertLinalgToLoopsPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void mlir::moe::buildMoELoopsToLLVMPipeline(
    OpPassManager &pm, const MoECPUPipelineOptions &options) {
  // Parallel loops (the tile loops) become OpenMP worksharing loops.
  pm.addPass(createConvertSCFToOpenMPPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  // Before scf-to-cf: the memref.alloca_scope that scf-to-openmp wraps a
  // parallel body in must still hold a single block when it is lowered.
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertMathToLLVMPass());
  // What LLVM has no intrinsic for (erf, tanh) becomes a libm call.
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createConvertOpenMPToLLVMPass());
  if (options.bf16Dot == BF16Dot::avx512) {
    // x86vector has no convert-to-llvm interface; only this pass lowers it.
    ConvertVectorToLLVMPassOptions vector;
    vector.x86Vector = true;
    pm.addPass(createConvertVectorToLLVMPass(vector));
  }
  pm.addPass(createConvertToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void mlir::moe::buildMoECPUPipeline(OpPassManager &pm,
                                    const MoECPUPipelineOptions &options) {
  buildMoECPUPreparePipeline(pm, options);
  buildMoECPUToLoopsPipeline(pm, options);
  buildMoELoopsToLLVMPipeline(pm, options);
}

void mlir::moe::buildMoEGPUKernelsPipeline(
    OpPassManager &pm, const MoEGPUPipelineOptions &options) {
  pm.nest<func::FuncOp>().addPass(createMoEDecomposeLayerPass());
  ConvertMoEToGPUPassOptions lowering;
  lowering.mma = options.mma;
  lowering.gateUpCols = options.gateUpCols;
  lowering.downCols = options.downCols;
  lowering.stages = options.stages;
  pm.addPass(createConvertMoEToGPUPass(lowering));
  // The host code becomes the launch plan: fold its buffer views.
  pm.nest<func::FuncOp>().addPass(createCanonicalizerPass());
  pm.nest<func::FuncOp>().addPass(createCSEPass());

  GpuNVVMAttachTargetOptions target;
  target.chip = options.chip;
  target.features = options.features;
  target.optLevel = 3;
  pm.addPass(createGpuNVVMAttachTarget(target));

  OpPassManager &kernels = pm.nest<gpu::GPUModuleOp>();
  kernels.addPass(createConvertLinalgToLoopsPass());
  kernels.addPass(createConvertVectorToSCFPass());
  kernels.addPass(createSCFToControlFlowPass());
  kernels.addPass(createConvertGpuOpsToNVVMOps());
  kernels.addPass(createMoEGPUTensorMapParamsPass());
  kernels.addPass(createConvertNVVMToLLVMPass());
  kernels.addPass(createCanonicalizerPass());
  kernels.addPass(createCSEPass());
  kernels.addPass(createReconcileUnrealizedCastsPass());

  // The toolkit gives ptxas and libdevice (expf, erff, tanhf); without it
  // the math functions would stay unresolved externs.
  GpuModuleToBinaryPassOptions binary;
  binary.toolkitPath = options.toolkit;
  binary.compilationTarget = options.format;
  pm.addPass(createGpuModuleToBinaryPass(binary));
}

void mlir::moe::registerMoEPipelines() {
  PassPipelineRegistration<MoECPUPipelineOptions>(
      "moe-cpu-pipeline",
      "Lower moe.layer to the LLVM dialect for the host CPU",
      buildMoECPUPipeline);
  PassPipelineRegistration<MoECPUPipelineOptions>(
      "moe-cpu-to-loops-pipeline",
      "Lower moe.layer to bufferized scf loops (moec --emit=linalg)",
      [](OpPassManager &pm, const MoECPUPipelineOptions &options) {
        buildMoECPUPreparePipeline(pm, options);
        buildMoECPUToLoopsPipeline(pm, options);
      });
  PassPipelineRegistration<MoEGPUPipelineOptions>(
      "moe-gpu-kernels-pipeline",
      "Lower moe.layer to NVIDIA GPU kernels (tensor cores for the "
      "expert FFNs) and compile them (PTX, cubin or fatbin)",
      buildMoEGPUKernelsPipeline);
}
