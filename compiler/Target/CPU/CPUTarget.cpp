//===- CPUTarget.cpp - LLVM dialect → object code → LAYER.so --------------===//

#include "compiler/Target/CPU/CPUTarget.h"
#include "compiler/Target/LayerABI.h"

#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/OpenMP/OpenMPToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"

using namespace mlir;
using namespace mlir::moe;

static llvm::Error error(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

llvm::Expected<std::unique_ptr<llvm::TargetMachine>>
mlir::moe::createCPUTargetMachine(llvm::StringRef cpu) {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  std::string message;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, message);
  if (!target)
    return error("no LLVM target for " + triple.str() + ": " + message);

  llvm::SubtargetFeatures features;
  std::string cpuName = cpu.str();
  if (cpuName.empty() || cpuName == "host") {
    cpuName = llvm::sys::getHostCPUName().str();
    for (auto &[feature, enabled] : llvm::sys::getHostCPUFeatures())
      features.AddFeature(feature, enabled);
  }
  llvm::TargetOptions options;
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      triple, cpuName, features.getString(), options, llvm::Reloc::PIC_,
      std::nullopt, llvm::CodeGenOptLevel::Aggressive));
  if (!machine)
    return error("cannot create a target machine for CPU '" + cpuName + "'");
  return machine;
}

llvm::Expected<std::unique_ptr<llvm::Module>> mlir::moe::translateLayerToLLVMIR(
    ModuleOp module, llvm::LLVMContext &context, llvm::StringRef metadata,
    llvm::TargetMachine &machine) {
  DialectRegistry registry;
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerOpenMPDialectTranslation(registry);
  module.getContext()->appendDialectRegistry(registry);

  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(module, context, "moe_layer");
  if (!llvmModule)
    return error("translation of the LLVM dialect to LLVM IR failed");
  llvmModule->setTargetTriple(machine.getTargetTriple());
  llvmModule->setDataLayout(machine.createDataLayout());
  if (llvm::Error err = addLayerABI(*llvmModule, metadata))
    return std::move(err);

  auto optimize = makeOptimizingTransformer(/*optLevel=*/3, /*sizeLevel=*/0,
                                            &machine);
  if (llvm::Error err = optimize(llvmModule.get()))
    return std::move(err);
  return llvmModule;
}

llvm::Error mlir::moe::emitObject(llvm::Module &module,
                                  llvm::TargetMachine &machine,
                                  llvm::raw_pwrite_stream &os) {
  llvm::legacy::PassManager pm;
  if (machine.addPassesToEmitFile(pm, os, nullptr,
                                  llvm::CodeGenFileType::ObjectFile))
    return error("the target cannot emit object files");
  pm.run(module);
  return llvm::Error::success();
}

llvm::Error mlir::moe::linkSharedLibrary(llvm::StringRef objectPath,
                                         llvm::StringRef outputPath) {
  // MOEC_LINKER overrides the lld found next to the LLVM moec was built with.
  std::string linker = MOEC_DEFAULT_LINKER;
  if (const char *env = std::getenv("MOEC_LINKER"))
    linker = env;
  if (!llvm::sys::fs::can_execute(linker)) {
    llvm::ErrorOr<std::string> found = llvm::sys::findProgramByName("ld.lld");
    if (!found)
      return error("cannot find the linker '" + linker +
                   "' (install lld-22 or set MOEC_LINKER)");
    linker = *found;
  }
  // The generated code needs libm (expf, erff, tanhf), libc (malloc) and
  // LLVM's OpenMP runtime (its parallel tile loops), found through RPATH.
  std::string ompDir = MOEC_OPENMP_LIBRARY_DIR;
  std::string ompSearch = "-L" + ompDir, ompRpath = "-rpath=" + ompDir;
  llvm::SmallVector<llvm::StringRef> args = {
      linker,       "-shared",     "--eh-frame-hdr", "-z",  "noexecstack",
      "-z",         "now",         "-o",             outputPath,
      objectPath,   "-L/lib/x86_64-linux-gnu", "-L/usr/lib/x86_64-linux-gnu",
      ompSearch,    ompRpath,      "-l:libomp.so.5", "-l:libm.so.6",
      "-l:libc.so.6"};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(linker, args, std::nullopt, {}, 0, 0,
                                     &message);
  if (rc != 0)
    return error("linking " + outputPath + " failed" +
                 (message.empty() ? "" : ": " + message));
  return llvm::Error::success();
}
