//===- TensorMapParams.cpp - Tensor maps as by-value kernel parameters ----===//

#include "compiler/Conversion/MoEToGPU/WarpgroupMma.h"
#include "compiler/Conversion/Passes.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEGPUTENSORMAPPARAMSPASS
#include "compiler/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
struct MoEGPUTensorMapParamsPass
    : moe::impl::MoEGPUTensorMapParamsPassBase<MoEGPUTensorMapParamsPass> {
  void runOnOperation() override {
    MLIRContext *context = &getContext();
    auto bytes = LLVM::LLVMArrayType::get(IntegerType::get(context, 8),
                                          wgmma::kTensorMapBytes);
    WalkResult result = getOperation().walk([&](LLVM::LLVMFuncOp func) {
      auto count =
          func->getAttrOfType<IntegerAttr>(wgmma::kTensorMapParamsAttr);
      if (!count)
        return WalkResult::advance();
      func->removeAttr(wgmma::kTensorMapParamsAttr);
      int64_t n = count.getInt();
      if (n > int64_t(func.getNumArguments())) {
        func.emitError("has fewer parameters than its ")
            << n << " tensor maps";
        return WalkResult::interrupt();
      }
      for (int64_t i = 0; i < n; ++i) {
        if (!isa<LLVM::LLVMPointerType>(func.getArgument(i).getType())) {
          func.emitError("tensor map parameter ")
              << i << " is not a pointer (convert-gpu-to-nvvm first)";
          return WalkResult::interrupt();
        }
        func.setArgAttr(i, LLVM::LLVMDialect::getByValAttrName(),
                        TypeAttr::get(bytes));
        func.setArgAttr(i, LLVM::LLVMDialect::getAlignAttrName(),
                        IntegerAttr::get(IntegerType::get(context, 64), 64));
        func.setArgAttr(i, NVVM::NVVMDialect::getGridConstantAttrName(),
                        UnitAttr::get(context));
      }
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};
} // namespace
