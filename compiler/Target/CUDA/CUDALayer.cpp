//===- CUDALayer.cpp - A GPU layer as a shared library --------------------===//

#include "compiler/Target/CUDA/CUDALayer.h"
#include "compiler/Target/LayerABI.h"

#include "llvm/IR/Constants.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Module.h"
#include "llvm/Target/TargetMachine.h"

using namespace mlir;
using namespace mlir::moe;

std::unique_ptr<llvm::Module>
mlir::moe::buildCUDALayerModule(llvm::LLVMContext &context,
                                llvm::StringRef metadata, llvm::StringRef image,
                                llvm::TargetMachine &machine) {
  auto module = std::make_unique<llvm::Module>("moec_cuda_layer", context);
  module->setTargetTriple(machine.getTargetTriple());
  module->setDataLayout(machine.createDataLayout());
  addLayerIdentity(*module, metadata);
  llvm::IRBuilder<> b(context);
  llvm::Type *ptr = b.getPtrTy();

  // The image, 16-byte aligned (cuModuleLoadData reads it in place).
  auto *bytes = llvm::ConstantDataArray::getRaw(
      image, image.size(), b.getInt8Ty());
  auto *global = new llvm::GlobalVariable(
      *module, bytes->getType(), /*isConstant=*/true,
      llvm::GlobalValue::PrivateLinkage, bytes, "moec.cuda_image");
  global->setAlignment(llvm::Align(16));
  llvm::Function *getImage =
      defineLayerFunction(*module, "moec_cuda_image", ptr, {ptr}, b);
  b.CreateStore(b.getInt64(image.size()), getImage->getArg(0));
  b.CreateRet(global);
  return module;
}
