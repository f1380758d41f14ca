//===- KernelBuilder.cpp - Kernels and launches for convert-moe-to-gpu ----===//

#include "compiler/Conversion/MoEToGPU/KernelBuilder.h"
#include "compiler/Conversion/MoEToLoops/Emitters.h"

#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/SymbolTable.h"

using namespace mlir;
using namespace mlir::moe;

gpu::GPUFuncOp gpu_kernels::createKernel(
    OpBuilder &builder, gpu::GPUModuleOp kernels, StringRef name,
    TypeRange args, int64_t blockSize, Location loc,
    function_ref<void(LoopEmitter &, ValueRange)> fill) {
  OpBuilder::InsertionGuard guard(builder);
  // Created detached, then inserted through the symbol table, which renames
  // it if the module already holds a kernel of that name.
  builder.clearInsertionPoint();
  auto func = gpu::GPUFuncOp::create(builder, loc, name,
                                     builder.getFunctionType(args, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(),
                builder.getUnitAttr());
  func.setKnownBlockSizeAttr(
      builder.getDenseI32ArrayAttr({int32_t(blockSize), 1, 1}));
  SymbolTable(kernels).insert(func);
  Block &entry = func.getBody().front();
  builder.setInsertionPointToEnd(&entry);
  auto ret = gpu::ReturnOp::create(builder, loc);
  builder.setInsertionPoint(ret);
  LoopEmitter em(builder, loc);
  fill(em, entry.getArguments());
  return func;
}

void gpu_kernels::forThisThread(LoopEmitter &em, Value tokens,
                                function_ref<void(Value)> body) {
  auto &b = em.builder();
  Value t = arith::AddIOp::create(
      b,
      arith::MulIOp::create(b, gpu::BlockIdOp::create(b, gpu::Dimension::x),
                            em.index(kTokenBlock)),
      gpu::ThreadIdOp::create(b, gpu::Dimension::x));
  em.ifThen(arith::CmpIOp::create(b, arith::CmpIPredicate::ult, t, tokens),
            [&] { body(t); });
}

gpu::GPUFuncOp gpu_kernels::createChunkHistogramKernel(
    OpBuilder &builder, gpu::GPUModuleOp kernels, StringRef name,
    MemRefType indicesType, int64_t numExperts, Location loc) {
  return createKernel(
      builder, kernels, name,
      {indicesType, chunkCountsType(builder.getContext(), numExperts)},
      kTokenBlock, loc, [&](LoopEmitter &em, ValueRange args) {
        forThisThread(em, em.dim(args[1], 0), [&](Value c) {
          emitChunkHistogram(em, args[0], args[1], c);
        });
      });
}

void gpu_kernels::forEachOfBlock(LoopEmitter &em, int64_t blockSize,
                                 Value count, function_ref<void(Value)> body) {
  auto &b = em.builder();
  auto loop = scf::ForOp::create(b, gpu::ThreadIdOp::create(b, gpu::Dimension::x),
                                 count, em.index(blockSize));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(loop.getBody()->getTerminator());
  body(loop.getInductionVar());
}

void gpu_kernels::blockBarrier(LoopEmitter &em) {
  gpu::BarrierOp::create(em.builder());
}

void gpu_kernels::onFirstThread(LoopEmitter &em, function_ref<void()> body) {
  auto &b = em.builder();
  Value zero = em.index(0);
  Value first = arith::AndIOp::create(
      b,
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                            gpu::BlockIdOp::create(b, gpu::Dimension::x), zero),
      arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                            gpu::ThreadIdOp::create(b, gpu::Dimension::x),
                            zero));
  em.ifThen(first, body);
}

void gpu_kernels::launch(LoopEmitter &em, gpu::GPUFuncOp kernel, Value gridX,
                         ValueRange operands, Value gridY,
                         int64_t sharedBytes) {
  Value one = em.index(1);
  auto block = kernel.getKnownBlockSizeAttr();
  gpu::KernelDim3 blockSize = {em.index(block[0]), one, one};
  Value shared = sharedBytes ? em.i32(sharedBytes) : Value();
  gpu::LaunchFuncOp::create(em.builder(), kernel,
                            {gridX, gridY ? gridY : one, one}, blockSize,
                            shared, operands);
}

Value gpu_kernels::tokenBlocks(LoopEmitter &em, Value tokens) {
  return arith::CeilDivUIOp::create(em.builder(), tokens,
                                    em.index(kTokenBlock));
}

Value gpu_kernels::deviceAlloc(LoopEmitter &em, MemRefType type,
                               ValueRange dynamicSizes) {
  return gpu::AllocOp::create(em.builder(), type, /*asyncToken=*/Type(),
                              /*asyncDependencies=*/ValueRange{},
                              dynamicSizes, /*symbolOperands=*/ValueRange{})
      .getMemref();
}

MemRefType gpu_kernels::bufferType(Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  return MemRefType::get(type.getShape(), type.getElementType());
}
