//===- MoEToLoops.cpp - The convert-moe-to-loops pass ---------------------===//

#include "compiler/Conversion/MoEToLoops/PopulatePatterns.h"
#include "compiler/Conversion/Passes.h"

#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include "mlir/Transforms/DialectConversion.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOETOLOOPSPASS
#include "compiler/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

void mlir::moe::populateMoEToLoopsConversionPatterns(
    RewritePatternSet &patterns, const DotSchedule &schedule) {
  populateRoutingToLoopsPatterns(patterns, schedule);
  populateDispatchToLoopsPatterns(patterns);
  populateExpertFFNToLoopsPatterns(patterns, schedule);
  populateCombineToLoopsPatterns(patterns);
}

namespace {
struct ConvertMoEToLoopsPass
    : moe::impl::ConvertMoEToLoopsPassBase<ConvertMoEToLoopsPass> {
  using Base::Base;

  void runOnOperation() override {
    if (vectorWidth <= 0 || rowBlock <= 0 || colBlock <= 0 ||
        pairRowBlock <= 0 || streamingRows < 0) {
      emitError(getOperation()->getLoc())
          << "convert-moe-to-loops: vector-width, row-block, col-block and "
             "pair-row-block must be positive";
      return signalPassFailure();
    }
    DotSchedule schedule{vectorWidth,   rowBlock,     colBlock,
                         streamingRows, pairRowBlock, bf16Dot};
    // moe.layer is decomposed by moe-decompose-layer, not lowered directly.
    ConversionTarget target(getContext());
    target.addIllegalDialect<MoEDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    RewritePatternSet patterns(&getContext());
    populateMoEToLoopsConversionPatterns(patterns, schedule);
    if (failed(applyPartialConversion(getOperation(), target,
                                      std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
