//===- MoEToLoops.cpp - The convert-moe-to-loops pass ---------------------===//

#include "compiler/Conversion/MoEToLoops/PopulatePatterns.h"
#include "compiler/Conversion/Passes.h"

#include "mlir/Transforms/DialectConversion.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOETOLOOPSPASS
#include "compiler/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

void mlir::moe::populateMoEToLoopsConversionPatterns(
    RewritePatternSet &patterns) {
  populateRoutingToLoopsPatterns(patterns);
  populateDispatchToLoopsPatterns(patterns);
  populateExpertFFNToLoopsPatterns(patterns);
  populateCombineToLoopsPatterns(patterns);
}

namespace {
struct ConvertMoEToLoopsPass
    : moe::impl::ConvertMoEToLoopsPassBase<ConvertMoEToLoopsPass> {
  void runOnOperation() override {
    // moe.layer is decomposed by moe-decompose-layer, not lowered directly.
    ConversionTarget target(getContext());
    target.addIllegalDialect<MoEDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    RewritePatternSet patterns(&getContext());
    populateMoEToLoopsConversionPatterns(patterns);
    if (failed(applyPartialConversion(getOperation(), target,
                                      std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
