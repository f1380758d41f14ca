//===- MoEToGPU.cpp - The convert-moe-to-gpu pass -------------------------===//

#include "compiler/Conversion/MoEToGPU/PopulatePatterns.h"
#include "compiler/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Transforms/DialectConversion.h"
#include "llvm/ADT/StringSwitch.h"

namespace mlir::moe {
#define GEN_PASS_DEF_CONVERTMOETOGPUPASS
#include "compiler/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr StringLiteral kKernelModule = "moe_kernels";

struct ConvertMoEToGPUPass
    : moe::impl::ConvertMoEToGPUPassBase<ConvertMoEToGPUPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::optional<GPUMma> kind = llvm::StringSwitch<std::optional<GPUMma>>(mma)
                                     .Case("sync", GPUMma::Sync)
                                     .Case("wgmma", GPUMma::Warpgroup)
                                     .Default(std::nullopt);
    if (!kind) {
      module.emitError("convert-moe-to-gpu: mma must be sync or wgmma, not '")
          << mma << "'";
      return signalPassFailure();
    }
    WarpgroupTiles tiles{gateUpCols, downCols, stages};
    if (std::string why = checkWarpgroupTiles(tiles); !why.empty()) {
      module.emitError("convert-moe-to-gpu: ") << why;
      return signalPassFailure();
    }
    // Say what the kernels cannot run before rewriting anything.
    WalkResult checked = module.walk([&](Operation *op) {
      LogicalResult ok = success();
      if (auto ffn = dyn_cast<ExpertFFNOp>(op))
        ok = checkExpertFFNForGPU(ffn, *kind);
      else if (auto shared = dyn_cast<SharedExpertOp>(op))
        ok = checkSharedExpertForGPU(shared, *kind);
      else if (isa<AuxLossOp>(op))
        ok = op->emitOpError("has no GPU kernel yet (the cuda target runs "
                             "inference layers)");
      else if (isa<LayerOp>(op))
        ok = op->emitOpError("must be decomposed first (moe-decompose-layer)");
      return failed(ok) ? WalkResult::interrupt() : WalkResult::advance();
    });
    if (checked.wasInterrupted())
      return signalPassFailure();

    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                    UnitAttr::get(&getContext()));
    auto kernels = module.lookupSymbol<gpu::GPUModuleOp>(kKernelModule);
    if (!kernels) {
      OpBuilder builder = OpBuilder::atBlockEnd(module.getBody());
      kernels = gpu::GPUModuleOp::create(builder, module.getLoc(),
                                         kKernelModule);
    }

    ConversionTarget target(getContext());
    target.addIllegalDialect<MoEDialect>();
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    RewritePatternSet patterns(&getContext());
    populateRoutingToGPUPatterns(patterns, kernels);
    populateDispatchToGPUPatterns(patterns, kernels);
    populateExpertFFNToGPUPatterns(patterns, kernels, *kind, tiles);
    if (failed(applyPartialConversion(module, target, std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace
