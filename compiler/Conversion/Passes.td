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
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect",
    "::mlir::vector::VectorDialect",
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
  ];
}

#endif // MOE_COMPILER_CONVERSION_PASSES_TD
