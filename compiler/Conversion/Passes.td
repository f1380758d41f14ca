//===- Passes.td - moec's conversion passes ----------------*- tablegen -*-===//

#ifndef MOE_COMPILER_CONVERSION_PASSES_TD
#define MOE_COMPILER_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def ConvertMoEToLoopsPass : Pass<"convert-moe-to-loops"> {
  let summary = "Lower the moe primitives to scf loops over memrefs";
  let description = [{
    Lowers `moe.router`, `moe.topk`, `moe.dispatch`, `moe.expert_ffn`,
    `moe.shared_expert`, `moe.combine`, `moe.stats` and `moe.aux_loss` to
    `scf`/`memref`/`arith`/`math` code. Tensor operands are read through
    `bufferization.to_buffer` and results are fresh buffers wrapped in
    `bufferization.to_tensor restrict`, so that One-Shot Bufferize finishes
    the function afterwards. `moe.layer` must be decomposed first.

    Matmuls are register-blocked vector kernels (`vector.load`/`vector.fma`
    along the contiguous input dimension, one `vector.reduction` per
    output): see `DotKernel.h`. Every reduction runs in one fixed order per
    compiled layer, independent of threads and batch composition.

    With `activation_type = bf16` the FFN tiles round their rows of `x` and
    their hidden activations to bf16 before multiplying. Pair-packed bf16
    weights (`weight_k_pack = 2`) are widened with one shift or mask per
    two multiply-adds, or, with `bf16-dot` and bf16 activations, multiplied
    by `x86vector.avx512.dot` (vdpbf16ps), whose order of additions (the
    odd input of a pair, then the even one, each product exact in f32) the
    widened kernel follows.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect",
    "::mlir::x86vector::X86VectorDialect",
  ];
  let options = [
    Option<"vectorWidth", "vector-width", "int64_t", /*default=*/"8",
           "f32 lanes per vector register (8: AVX2, 16: AVX-512)">,
    Option<"rowBlock", "row-block", "int64_t", /*default=*/"6",
           "activation rows per register block of a matmul">,
    Option<"colBlock", "col-block", "int64_t", /*default=*/"2",
           "weight rows (dot kernels) or vectors (panel kernels) per "
           "register block of a matmul">,
    Option<"streamingRows", "streaming-rows", "int64_t", /*default=*/"2",
           "tiles with at most this many rows run the weight-streaming "
           "kernel">,
    Option<"pairRowBlock", "pair-row-block", "int64_t", /*default=*/"4",
           "activation rows per register block over pair-packed bf16 "
           "weights">,
    Option<"bf16Dot", "bf16-dot", "::mlir::moe::BF16Dot",
           /*default=*/"::mlir::moe::BF16Dot::none",
           "how bf16 activations meet pair-packed bf16 weights",
           [{::llvm::cl::values(
               clEnumValN(::mlir::moe::BF16Dot::none, "none",
                          "f32 activations in memory, widened weights"),
               clEnumValN(::mlir::moe::BF16Dot::avx512, "avx512",
                          "AVX-512 BF16 dot products (x86vector.avx512.dot)"),
               clEnumValN(::mlir::moe::BF16Dot::emulate, "emulate",
                          "the avx512 data flow, each dot product as two "
                          "f32 multiply-adds"))}]>,
  ];
}

def ConvertMoEToGPUPass : Pass<"convert-moe-to-gpu", "::mlir::ModuleOp"> {
  let summary = "Lower the moe primitives to GPU kernels and their launches";
  let description = [{
    Each primitive becomes one or more `gpu.func` kernels in the
    `gpu.module @moe_kernels` (created if absent; the module becomes a
    `gpu.container_module`) and, where the op was, `gpu.alloc` of its
    results on the device and `gpu.launch_func` of its kernels. Nothing in
    a forward copies to the host or waits for it.

    - `moe.router`: the logits as a tiled f32 matmul (a block of 256
      threads per 64 tokens x 64 experts, chunks of 32 inputs staged in
      shared memory, each logit summed in input order); the softmax and
      `moe.topk` one thread per token running the CPU lowering's per-token
      code (Emitters.h); the capacity as the dispatch's phases.
    - `moe.dispatch`: the counting sort as phases (a histogram per chunk of
      256 slots, ranks and the padded scan in one block, the scatter per
      chunk) into buffers sized for the most rows any routing needs
      (`R_max`); `moe.stats` the same histogram and a sum per expert;
      `moe.combine`: one thread per output element, choice order.
    - `moe.expert_ffn`, `moe.shared_expert`: bf16 tensor-core kernels
      with f32 sums: gate/up with the activation and GLU product in the
      epilogue (stored as bf16), then down with the routing weight (or the
      shared expert's sigmoid gate) in the epilogue. With `mma=sync`
      (`nvvm.mma.sync` m16n8k16), one warp per 16 rows by 32 columns reads
      both operands from global memory, rounding f32 to bf16 as it loads.
      With `mma=wgmma` (sm_90a), a gather kernel writes the rows' x as bf16
      in row order, then one warpgroup per 64 rows runs
      `nvvm.wgmma.mma_async` on tiles that TMA (`cp.async.bulk.tensor`)
      copies into shared memory, a 4-stage pipeline on mbarriers; the
      tensor maps come from `nvgpu.tma.create.descriptor` on the host and
      are the kernels' leading parameters (`moe.tensor_map_params`).

    Sizes the FFN kernels cannot run (hidden or width not multiples of 16,
    tile_rows not a multiple of 16, or of 64 with wgmma, panel-packed or
    f16 weights, f32 weights with wgmma), an undecomposed `moe.layer` and
    `moe.aux_loss` are errors on the op.
  }];
  let options = [
    Option<"mma", "mma", "std::string", /*default=*/"\"sync\"",
           "Expert FFN matmuls: sync (mma.sync, sm_80+) or wgmma "
           "(warpgroup MMA with TMA loads, sm_90a)">,
    Option<"gateUpCols", "wgmma-gate-up-cols", "int64_t", /*default=*/"64",
           "wgmma: output columns of gate and up per block (8 to 128)">,
    Option<"downCols", "wgmma-down-cols", "int64_t", /*default=*/"128",
           "wgmma: output columns of down per block (8 to 256)">,
    Option<"stages", "wgmma-stages", "int64_t", /*default=*/"4",
           "wgmma: pipeline stages of 64 inputs in shared memory (2 to 8)">,
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::gpu::GPUDialect",
    "::mlir::LLVM::LLVMDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::NVVM::NVVMDialect",
    "::mlir::nvgpu::NVGPUDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect",
  ];
}

def MoEGPUTensorMapParamsPass
    : Pass<"moe-gpu-tensor-map-params", "::mlir::gpu::GPUModuleOp"> {
  let summary = "Pass the kernels' tensor maps by value, as grid constants";
  let description = [{
    After convert-gpu-to-nvvm: the leading `moe.tensor_map_params` = N
    pointer parameters of a kernel become 128-byte, 64-byte aligned by-value
    parameters marked `nvvm.grid_constant` (CUDA's `const __grid_constant__
    CUtensorMap`): the launch copies each CUtensorMap into the kernel's
    parameter space, where `cp.async.bulk.tensor` reads it through its
    address. No device memory holds a map, and a captured graph keeps the
    maps of its launches.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect",
                           "::mlir::NVVM::NVVMDialect"];
}

#endif // MOE_COMPILER_CONVERSION_PASSES_TD
