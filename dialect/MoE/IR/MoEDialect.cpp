//===- MoEDialect.cpp - The moe dialect -----------------------------------===//

#include "dialect/MoE/IR/MoEDialect.h"
#include "dialect/MoE/IR/MoEOps.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;

#include "dialect/MoE/IR/MoEOpsDialect.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialect/MoE/IR/MoEAttrs.cpp.inc"

LogicalResult
CPUScheduleAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                        int64_t vectorWidth, int64_t rowBlock, int64_t colBlock,
                        int64_t streamingRows, int64_t pairRowBlock) {
  if (vectorWidth <= 0 || rowBlock <= 0 || colBlock <= 0 || pairRowBlock <= 0)
    return emitError() << "vector_width, row_block, col_block and "
                          "pair_row_block must be positive, got "
                       << vectorWidth << ", " << rowBlock << ", " << colBlock
                       << ", " << pairRowBlock;
  if (streamingRows < 0)
    return emitError() << "streaming_rows must not be negative, got "
                       << streamingRows;
  return success();
}

void MoEDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialect/MoE/IR/MoEAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "dialect/MoE/IR/MoEOps.cpp.inc"
      >();
}
