//===- CPUTarget.h - LLVM dialect → object code → LAYER.so ------*- C++ -*-===//

#ifndef MOE_COMPILER_TARGET_CPU_CPUTARGET_H
#define MOE_COMPILER_TARGET_CPU_CPUTARGET_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

#include <memory>

namespace llvm {
class LLVMContext;
class Module;
class TargetMachine;
class raw_pwrite_stream;
} // namespace llvm

namespace mlir::moe {

/// A PIC target machine for this host's CPU and its features (AVX2,
/// AVX-512, ...), or for `cpu` when given.
llvm::Expected<std::unique_ptr<llvm::TargetMachine>>
createCPUTargetMachine(llvm::StringRef cpu = "");

/// Translates a module in the LLVM dialect to LLVM IR, adds the layer ABI
/// (LayerABI.h) and optimises it at -O3 for `machine`.
llvm::Expected<std::unique_ptr<llvm::Module>>
translateLayerToLLVMIR(ModuleOp module, llvm::LLVMContext &context,
                       llvm::StringRef metadata, llvm::TargetMachine &machine);

/// Writes `module` as an ELF object.
llvm::Error emitObject(llvm::Module &module, llvm::TargetMachine &machine,
                       llvm::raw_pwrite_stream &os);

/// Links one object into a shared library with LLVM's lld.
llvm::Error linkSharedLibrary(llvm::StringRef objectPath,
                              llvm::StringRef outputPath);

} // namespace mlir::moe

#endif // MOE_COMPILER_TARGET_CPU_CPUTARGET_H
