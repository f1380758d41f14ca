//===- Passes.h - Transformations of the moe dialect ------------*- C++ -*-===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_PASSES_H
#define MOE_DIALECT_MOE_TRANSFORMS_PASSES_H

#include "dialect/MoE/IR/MoEDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
class RewritePatternSet;
namespace moe {

#define GEN_PASS_DECL
#include "dialect/MoE/Transforms/Passes.h.inc"

/// Patterns rewriting moe.layer into the moe primitives.
void populateDecomposeLayerPatterns(RewritePatternSet &patterns);

#define GEN_PASS_REGISTRATION
#include "dialect/MoE/Transforms/Passes.h.inc"

} // namespace moe
} // namespace mlir

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_H
