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

    Dot products carry `reassoc,contract` fast-math flags so that LLVM may
    vectorise them; every reduction still runs in one fixed order per
    compiled layer, independent of threads and batch composition.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect",
    "::mlir::bufferization::BufferizationDialect",
    "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect",
    "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect",
  ];
}

#endif // MOE_COMPILER_CONVERSION_PASSES_TD
