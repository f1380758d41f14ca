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

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD
