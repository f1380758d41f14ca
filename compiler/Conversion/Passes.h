//===- Passes.h - moec's conversion passes ----------------------*- C++ -*-===//

#ifndef MOE_COMPILER_CONVERSION_PASSES_H
#define MOE_COMPILER_CONVERSION_PASSES_H

#include "compiler/Conversion/BF16Dot.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
class RewritePatternSet;
namespace moe {

#define GEN_PASS_DECL
#include "compiler/Conversion/Passes.h.inc"

struct DotSchedule;

/// Patterns lowering the moe primitives to loops (see convert-moe-to-loops);
/// `schedule` is the register blocking of their matmuls.
void populateMoEToLoopsConversionPatterns(RewritePatternSet &patterns,
                                          const DotSchedule &schedule);

#define GEN_PASS_REGISTRATION
#include "compiler/Conversion/Passes.h.inc"

} // namespace moe
} // namespace mlir

#endif // MOE_COMPILER_CONVERSION_PASSES_H
