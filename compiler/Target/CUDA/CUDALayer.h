//===- CUDALayer.h - A GPU layer as a shared library ------------*- C++ -*-===//
//
// A CUDA LAYER.so holds data only: the ABI version, the metadata (with the
// launch plan) and the kernels' fatbin (sm_90a SASS with PTX). libmoert
// loads the fatbin with the driver and replays the plan (docs/abi.md).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_TARGET_CUDA_CUDALAYER_H
#define MOE_COMPILER_TARGET_CUDA_CUDALAYER_H

#include "llvm/ADT/StringRef.h"

#include <memory>

namespace llvm {
class LLVMContext;
class Module;
class TargetMachine;
} // namespace llvm

namespace mlir::moe {

/// A host module exporting `moec_abi_version`, `moec_layer_metadata` and
/// `const void *moec_cuda_image(uint64_t *size)` for `machine`.
std::unique_ptr<llvm::Module>
buildCUDALayerModule(llvm::LLVMContext &context, llvm::StringRef metadata,
                     llvm::StringRef image, llvm::TargetMachine &machine);

} // namespace mlir::moe

#endif // MOE_COMPILER_TARGET_CUDA_CUDALAYER_H
