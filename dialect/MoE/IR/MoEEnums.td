//===- MoEEnums.td - Enumerations of the moe dialect -------*- tablegen -*-===//

#ifndef MOE_DIALECT_MOE_IR_MOEENUMS_TD
#define MOE_DIALECT_MOE_IR_MOEENUMS_TD

include "mlir/IR/EnumAttr.td"

def MoE_ScoringFunc : I32EnumAttr<"ScoringFunc",
    "how router logits become expert scores", [
      I32EnumAttrCase<"softmax", 0>,
      I32EnumAttrCase<"sigmoid", 1>,
    ]> {
  let cppNamespace = "::mlir::moe";
}

def MoE_GroupScore : I32EnumAttr<"GroupScore",
    "how an expert group is scored for group-limited selection", [
      // The best expert score in the group (DeepSeek-V2 group_limited_greedy).
      I32EnumAttrCase<"max", 0>,
      // The sum of the two best scores in the group (DeepSeek-V3 noaux_tc).
      I32EnumAttrCase<"top2_sum", 1>,
    ]> {
  let cppNamespace = "::mlir::moe";
}

def MoE_Activation : I32EnumAttr<"Activation",
    "the expert FFN's activation function", [
      I32EnumAttrCase<"silu", 0>,
      I32EnumAttrCase<"gelu", 1>,
      I32EnumAttrCase<"gelu_tanh", 2>,
      I32EnumAttrCase<"relu", 3>,
    ]> {
  let cppNamespace = "::mlir::moe";
}

def MoE_AuxLossKind : I32EnumAttr<"AuxLossKind",
    "which auxiliary router loss to compute", [
      // Switch/Mixtral load balancing: E * sum_e(f_e * P_e).
      I32EnumAttrCase<"load_balancing", 0>,
      // Router z-loss: mean over tokens of logsumexp(logits)^2.
      I32EnumAttrCase<"z_loss", 1>,
    ]> {
  let cppNamespace = "::mlir::moe";
}

#endif // MOE_DIALECT_MOE_IR_MOEENUMS_TD
