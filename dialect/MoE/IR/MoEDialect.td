//===- MoEDialect.td - The moe dialect ---------------------*- tablegen -*-===//
//
// The `moe` dialect describes one Mixture-of-Experts block with tensor
// semantics: a whole block (`moe.layer`) and the primitives it decomposes into.
// Every routing variant of the supported model families is an attribute.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEDIALECT_TD
#define MOE_DIALECT_MOE_IR_MOEDIALECT_TD

include "mlir/IR/OpBase.td"

def MoE_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::mlir::moe";
  let summary = "Mixture-of-Experts routing, dispatch, expert FFNs and combine";
  let description = [{
    The `moe` dialect models one Mixture-of-Experts block. `moe.layer` carries
    the whole block with all of its routing attributes; `moe-decompose-layer`
    rewrites it into the primitives `moe.router`, `moe.topk`, `moe.dispatch`,
    `moe.expert_ffn`, `moe.shared_expert`, `moe.combine` and `moe.stats`, which
    the CPU and GPU pipelines lower. `moe.aux_loss` computes the training-time
    load-balancing and router z-losses.

    Conventions: activations are `[tokens, hidden]`; linear weights are stored
    as in PyTorch, `[out_features, in_features]`; routed expert weights are
    stacked over experts, `[experts, out_features, in_features]`; an expert
    index of -1 marks a slot dropped by an expert's capacity.
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
  let useDefaultAttributePrinterParser = 1;
}

class MoE_Op<string mnemonic, list<Trait> traits = []>
    : Op<MoE_Dialect, mnemonic, traits>;

#endif // MOE_DIALECT_MOE_IR_MOEDIALECT_TD
