//===- Passes.td - Transformations of the moe dialect ------*- tablegen -*-===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD
#define MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def MoEDecomposeLayerPass : Pass<"moe-decompose-layer"> {
  let summary = "Rewrite moe.layer into the routing, dispatch, FFN and combine primitives";
  let description = [{
    Replaces every `moe.layer` with the chain

    ```
    moe.router -> moe.topk -> moe.dispatch -> moe.expert_ffn
               -> [moe.shared_expert] -> moe.combine ; moe.stats
    ```

    carrying each routing attribute to the primitive that implements it.
  }];
  let dependentDialects = ["::mlir::moe::MoEDialect"];
}

def MoEPackWeightsPass : Pass<"moe-pack-weights", "::mlir::func::FuncOp"> {
  let summary = "Pack the FFN weights that a function receives into panels";
  let description = [{
    For every `moe.expert_ffn` and `moe.shared_expert` whose weights are
    arguments of the function, changes those arguments to the panel layout
    (`[out, in]` → `[ceil(out / P), in, P]`, see `moe.expert_ffn`) and sets
    the op's `weight_panel`. With `k-pack=2`, bf16 weights whose inputs
    come in pairs (even hidden and width) are packed two inputs per lane
    (`[ceil(out / P), in / 2, 2 P]`, `weight_k_pack = 2`), the operand
    layout of AVX-512 BF16 dot products. The argument keeps its checkpoint shape in a `moe.logical_shape`
    attribute and gets `moe.panel = P` (and `moe.k_pack = 2`), so that
    whoever supplies the weights (libmoert) packs them once, at load time.
  }];
  let options = [
    Option<"panel", "panel", "int64_t", /*default=*/"8",
           "outputs per panel (the vector width in f32 lanes) for ops "
           "without a #moe.cpu_schedule">,
    Option<"kPack", "k-pack", "int64_t", /*default=*/"1",
           "consecutive inputs per lane for bf16 weights (1 or 2)">,
  ];
  let dependentDialects = ["::mlir::moe::MoEDialect"];
}

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD
