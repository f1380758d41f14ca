//===- MoEDialect.cpp - The moe dialect -----------------------------------===//

#include "dialect/MoE/IR/MoEDialect.h"
#include "dialect/MoE/IR/MoEOps.h"

using namespace mlir;
using namespace mlir::moe;

#include "dialect/MoE/IR/MoEOpsDialect.cpp.inc"

void MoEDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialect/MoE/IR/MoEOps.cpp.inc"
      >();
}
