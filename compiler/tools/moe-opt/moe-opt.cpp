//===- moe-opt.cpp - mlir-opt for the moe dialect -------------------------===//
//
// Runs any moe or upstream pass or pipeline on a .mlir file.
//
//===----------------------------------------------------------------------===//

#include "compiler/Registration/Registration.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::moe::registerMoECompilerPasses();
  mlir::DialectRegistry registry;
  mlir::moe::registerMoECompilerDialects(registry);
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "moe-opt: the moe dialect's optimizer driver\n", registry));
}
