//===- DecomposeLayer.cpp - moe.layer into primitives ---------------------===//

#include "dialect/MoE/IR/MoEOps.h"
#include "dialect/MoE/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDECOMPOSELAYERPASS
#include "dialect/MoE/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
/// `[d0, d1]` of `like`'s element type, keeping dynamic sizes dynamic.
RankedTensorType tensor2D(int64_t d0, int64_t d1, Type element) {
  return RankedTensorType::get({d0, d1}, element);
}

struct DecomposeLayer : OpRewritePattern<LayerOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(LayerOp layer,
                                PatternRewriter &rewriter) const override {
    Location loc = layer.getLoc();
    Type element = layer.getInput().getType().getElementType();
    Type i32 = rewriter.getI32Type();
    int64_t tokens = layer.getInput().getType().getDimSize(0);
    int64_t hidden = layer.getHiddenSize();
    int64_t experts = layer.getNumExperts();
    int64_t k = layer.getK();
    int64_t dyn = ShapedType::kDynamic;

    auto scoresType = tensor2D(tokens, experts, element);
    CPUScheduleAttr schedule = layer.getScheduleAttr();
    auto router = RouterOp::create(rewriter, loc, scoresType, scoresType,
                                   layer.getInput(), layer.getRouterWeight(),
                                   layer.getScoring(), schedule);

    auto topk = TopKOp::create(
        rewriter, loc, tensor2D(tokens, k, element), tensor2D(tokens, k, i32),
        router.getScores(), layer.getSelectionBias(), layer.getK(),
        layer.getGroups(), layer.getTopkGroups(), layer.getGroupScore(),
        layer.getRenormalize(), layer.getScalingFactorAttr().getValue(),
        layer.getCapacity());

    auto rowsType = RankedTensorType::get({dyn}, i32);
    auto dispatch = DispatchOp::create(
        rewriter, loc, rowsType, tensor2D(tokens, k, i32),
        RankedTensorType::get({experts + 1}, i32), rowsType,
        topk.getIndices(), experts, layer.getTileRows());

    auto ffn = ExpertFFNOp::create(
        rewriter, loc, tensor2D(dyn, hidden, element), layer.getInput(),
        dispatch.getSortedSlots(), dispatch.getTileExperts(),
        topk.getWeights(), layer.getExpertGate(), layer.getExpertUp(),
        layer.getExpertDown(), layer.getActivation(), layer.getTileRows(),
        /*weight_panel=*/0, /*weight_k_pack=*/1, layer.getActivationTypeAttr(),
        schedule);

    Value shared;
    if (layer.getSharedUp())
      shared = SharedExpertOp::create(
          rewriter, loc, layer.getOutput().getType(), layer.getInput(),
          layer.getSharedGate(), layer.getSharedUp(), layer.getSharedDown(),
          layer.getSharedExpertGate(), layer.getActivation(),
          /*weight_panel=*/0, /*weight_k_pack=*/1,
          layer.getActivationTypeAttr(), schedule);

    auto combine =
        CombineOp::create(rewriter, loc, layer.getOutput().getType(),
                          ffn.getOutput(), dispatch.getSlotRows(), shared);
    auto stats = StatsOp::create(rewriter, loc,
                                 layer.getTokensPerExpert().getType(),
                                 topk.getIndices());
    rewriter.replaceOp(layer, {combine.getOutput(), stats.getTokensPerExpert()});
    return success();
  }
};

struct MoEDecomposeLayerPass
    : moe::impl::MoEDecomposeLayerPassBase<MoEDecomposeLayerPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateDecomposeLayerPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void mlir::moe::populateDecomposeLayerPatterns(RewritePatternSet &patterns) {
  patterns.add<DecomposeLayer>(patterns.getContext());
}
