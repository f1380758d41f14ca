//===- Pipelines.h - moec's compilation pipelines ---------------*- C++ -*-===//

#ifndef MOE_COMPILER_PIPELINES_PIPELINES_H
#define MOE_COMPILER_PIPELINES_PIPELINES_H

#include "compiler/Conversion/BF16Dot.h"

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
  Option<int64_t> pairRowBlock{
      *this, "pair-row-block",
      llvm::cl::desc("activation rows per register block over pair-packed "
                     "bf16 weights"),
      llvm::cl::init(4)};
  Option<int64_t> kPack{
      *this, "k-pack",
      llvm::cl::desc("consecutive inputs per lane of packed bf16 weights"),
      llvm::cl::init(1)};
  Option<BF16Dot> bf16Dot{
      *this, "bf16-dot",
      llvm::cl::desc("bf16 dot products for bf16 activations"),
      llvm::cl::init(BF16Dot::none),
      llvm::cl::values(
          clEnumValN(BF16Dot::none, "none", "widened weights"),
          clEnumValN(BF16Dot::avx512, "avx512", "AVX-512 BF16 (vdpbf16ps)"),
          clEnumValN(BF16Dot::emulate, "emulate",
                     "the avx512 data flow with f32 multiply-adds"))};
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

/// Loops over memrefs → the LLVM dialect (with `bf16-dot`, the x86vector
/// dot products to their LLVM intrinsics).
void buildMoELoopsToLLVMPipeline(OpPassManager &pm,
                                 const MoECPUPipelineOptions &options);

/// The whole CPU pipeline: the three above.
void buildMoECPUPipeline(OpPassManager &pm,
                         const MoECPUPipelineOptions &options);

/// Options of the GPU kernel pipeline (NVIDIA).
struct MoEGPUPipelineOptions
    : public PassPipelineOptions<MoEGPUPipelineOptions> {
  Option<std::string> chip{*this, "chip",
                           llvm::cl::desc("GPU architecture (sm_90a: Hopper)"),
                           llvm::cl::init("sm_90a")};
  Option<std::string> features{
      *this, "features",
      llvm::cl::desc("PTX ISA version feature (CUDA 12.0+ ptxas reads 8.0)"),
      llvm::cl::init("+ptx80")};
  Option<std::string> toolkit{
      *this, "toolkit",
      llvm::cl::desc("CUDA toolkit (libdevice for math functions, ptxas)"),
      llvm::cl::init("/usr/local/cuda")};
  Option<std::string> mma{
      *this, "mma",
      llvm::cl::desc("Expert FFN matmuls: sync (mma.sync, sm_80+) or wgmma "
                     "(warpgroup MMA with TMA loads, sm_90a)"),
      llvm::cl::init("sync")};
  Option<int64_t> gateUpCols{
      *this, "wgmma-gate-up-cols",
      llvm::cl::desc("wgmma: output columns of gate and up per block"),
      llvm::cl::init(64)};
  Option<int64_t> downCols{
      *this, "wgmma-down-cols",
      llvm::cl::desc("wgmma: output columns of down per block"),
      llvm::cl::init(128)};
  Option<int64_t> stages{
      *this, "wgmma-stages",
      llvm::cl::desc("wgmma: pipeline stages of 64 inputs"),
      llvm::cl::init(4)};
  Option<std::string> format{
      *this, "format",
      llvm::cl::desc("Kernel binary: isa (PTX text), bin (cubin), fatbin "
                     "(cubin with PTX)"),
      llvm::cl::init("isa")};
};

/// moe.layer → the primitives → kernels in `gpu.module @moe_kernels` and
/// their launches (convert-moe-to-gpu); the kernels compiled by
/// gpu-module-to-binary. The host function keeps its gpu.alloc and
/// gpu.launch_func ops (the launch plan, docs/gpu.md).
void buildMoEGPUKernelsPipeline(OpPassManager &pm,
                                const MoEGPUPipelineOptions &options);

/// Registers `moe-cpu-pipeline`, `moe-cpu-to-loops-pipeline` and
/// `moe-gpu-kernels-pipeline`.
void registerMoEPipelines();

} // namespace moe
} // namespace mlir

#endif // MOE_COMPILER_PIPELINES_PIPELINES_H
