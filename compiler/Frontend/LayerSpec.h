//===- LayerSpec.h - One MoE block, as the frontends read it ----*- C++ -*-===//

#ifndef MOE_COMPILER_FRONTEND_LAYERSPEC_H
#define MOE_COMPILER_FRONTEND_LAYERSPEC_H

#include "dialect/MoE/IR/MoEOps.h"

#include <string>

namespace mlir::moe {

/// Everything moe.layer needs, plus the checkpoint's tensor names (relative
/// to the block; `{e}` stands for the expert index).
struct LayerSpec {
  std::string family;
  int64_t hidden = 0;
  int64_t width = 0;
  int64_t experts = 0;
  int64_t k = 0;
  ScoringFunc scoring = ScoringFunc::softmax;
  int64_t groups = 1;
  int64_t topkGroups = 1;
  GroupScore groupScore = GroupScore::max;
  bool renormalize = false;
  double scalingFactor = 1.0;
  int64_t capacity = 0;
  Activation activation = Activation::silu;
  /// Rows per tile of the dispatch plan: each tile re-reads its expert's
  /// weights once, so larger tiles trade padding for weight traffic.
  int64_t tileRows = 128;
  /// How the FFN weights (routed and shared experts) are kept in memory:
  /// f32, or bf16 to halve the bytes a forward streams. The router and the
  /// other small weights stay f32.
  enum class WeightType { f32, bf16 } ffnWeights = WeightType::f32;
  /// What the expert matmuls multiply activations in: f32, or bf16 (x and
  /// the hidden activations rounded to bf16; sums stay f32).
  WeightType ffnActivations = WeightType::f32;

  std::string routerName;
  std::string biasName;       // empty: no selection bias
  std::string expertGateName; // empty: plain (non-GLU) experts
  std::string expertUpName;
  std::string expertDownName;

  int64_t sharedWidth = 0;        // 0: no shared experts
  std::string sharedGateName;     // empty: plain shared expert
  std::string sharedUpName;
  std::string sharedDownName;
  std::string sharedExpertGateName; // empty: no sigmoid gate
};

/// Builds `module { func.func @moe_forward(...) { moe.layer ... } }` with the
/// weights as arguments named by `moe.weight` argument attributes.
OwningOpRef<ModuleOp> buildLayerModule(MLIRContext *context,
                                       const LayerSpec &spec, Location loc);

} // namespace mlir::moe

#endif // MOE_COMPILER_FRONTEND_LAYERSPEC_H
