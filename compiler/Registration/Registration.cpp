//===- Registration.cpp - One place to register moec's IR pieces ----------===//

#include "compiler/Registration/Registration.h"

#include "compiler/Conversion/Passes.h"
#include "compiler/Pipelines/Pipelines.h"
#include "dialect/MoE/IR/MoEDialect.h"
#include "dialect/MoE/Transforms/Passes.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"

void mlir::moe::registerMoECompilerDialects(DialectRegistry &registry) {
  registry.insert<MoEDialect>();
  registerAllDialects(registry);
  registerAllExtensions(registry);
  // gpu-module-to-binary translates the kernels (NVVM, GPU, LLVM) itself.
  registerAllToLLVMIRTranslations(registry);
}

void mlir::moe::registerMoECompilerPasses() {
  registerAllPasses();
  registerMoEPasses();
  registerMoEConversionPasses();
  registerMoEPipelines();
}
