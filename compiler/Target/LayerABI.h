//===- LayerABI.h - The compiled layer's interface to libmoert --*- C++ -*-===//
//
// docs/abi.md describes the contract; this is the compiler's side of it.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_TARGET_LAYERABI_H
#define MOE_COMPILER_TARGET_LAYERABI_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

namespace llvm {
class Function;
class IRBuilderBase;
class Module;
class Type;
} // namespace llvm

namespace mlir::moe {

/// Must match MOERT_ABI_VERSION in runtime/include/moert/moert.h.
constexpr unsigned kLayerABIVersion = 1;
/// The entry function's name in the lowered module.
constexpr llvm::StringLiteral kEntryName = "moe_forward";

/// Finds the module's one function holding a moe.layer, names it
/// `moe_forward` and checks that every argument but the first (the tokens)
/// names its checkpoint tensor with a `moe.weight` attribute.
llvm::Expected<func::FuncOp> prepareEntryFunction(ModuleOp module);

/// The metadata JSON of docs/abi.md for the (tensor-level) entry function.
std::string buildLayerMetadata(ModuleOp module, func::FuncOp entry);

/// Drops the `moe.*` argument attributes once the metadata holds them (LLVM
/// has no use for them).
void eraseWeightNames(func::FuncOp entry);

/// Adds `moec_abi_version`, `moec_layer_metadata` and `moec_forward` (which
/// unpacks its `void **` into the entry's C interface) to the LLVM module.
llvm::Error addLayerABI(llvm::Module &module, llvm::StringRef metadata);

/// What every layer exports, CPU or CUDA: `moec_abi_version` and
/// `moec_layer_metadata`.
void addLayerIdentity(llvm::Module &module, llvm::StringRef metadata);

/// An external function `name` of `module` with an empty entry block, where
/// `b` is left to fill it.
llvm::Function *defineLayerFunction(llvm::Module &module, llvm::StringRef name,
                                    llvm::Type *result,
                                    llvm::ArrayRef<llvm::Type *> params,
                                    llvm::IRBuilderBase &b);

} // namespace mlir::moe

#endif // MOE_COMPILER_TARGET_LAYERABI_H
