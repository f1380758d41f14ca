//===- LaunchPlan.h - A GPU layer's host code as data -----------*- C++ -*-===//
//
// After convert-moe-to-gpu the entry function's body is host code of a
// simple kind: device allocations sized by index arithmetic on the token
// count, kernel launches, frees. moec records it as a launch plan in the
// layer's metadata (docs/abi.md, "CUDA layers"), and libmoert replays it
// with the CUDA driver: the runtime allocates and launches, the arithmetic
// of the MoE block stays in the generated kernels.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_TARGET_CUDA_LAUNCHPLAN_H
#define MOE_COMPILER_TARGET_CUDA_LAUNCHPLAN_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/JSON.h"

namespace mlir::moe {

/// The launch plan of `entry` (after convert-moe-to-gpu): its buffers,
/// steps and results. An op the plan cannot express is an error naming it.
llvm::Expected<llvm::json::Object> buildLaunchPlan(func::FuncOp entry);

} // namespace mlir::moe

#endif // MOE_COMPILER_TARGET_CUDA_LAUNCHPLAN_H
