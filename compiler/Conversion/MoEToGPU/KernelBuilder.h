//===- KernelBuilder.h - Kernels and launches, GPU ------------*- C++ -*-===//
//
// Every primitive becomes: device buffers for its results (gpu.alloc), one
// or more `gpu.func` kernels in the `gpu.module @moe_kernels`, and their
// `gpu.launch_func` where the op was. Kernel bodies are written with the
// LoopEmitter, like the CPU loops, and often with the same emitters.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_CONVERSION_MOETOGPU_KERNELBUILDER_H
#define MOE_COMPILER_CONVERSION_MOETOGPU_KERNELBUILDER_H

#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/PatternMatch.h"

namespace mlir::moe::gpu_kernels {

/// A pattern lowering `OpT` to kernels added to `kernels`.
template <typename OpT>
struct KernelPattern : OpRewritePattern<OpT> {
  KernelPattern(MLIRContext *context, gpu::GPUModuleOp kernels)
      : OpRewritePattern<OpT>(context), kernels(kernels) {}
  gpu::GPUModuleOp kernels;
};

/// Threads per block of the one-thread-per-token kernels.
constexpr int64_t kTokenBlock = 128;

/// A kernel `name(args...)` (renamed if taken) in `kernels` with
/// `blockSize` threads per block; `fill` emits its body.
gpu::GPUFuncOp createKernel(OpBuilder &builder, gpu::GPUModuleOp kernels,
                            StringRef name, TypeRange args, int64_t blockSize,
                            Location loc,
                            function_ref<void(LoopEmitter &, ValueRange)> fill);

/// In a kernel launched over ceil(tokens / kTokenBlock) blocks of
/// kTokenBlock threads: body(t) for this thread's token t < tokens.
void forThisToken(LoopEmitter &em, Value tokens,
                  function_ref<void(Value)> body);

/// In a kernel: body() on thread 0 of block 0 only (the order-dependent
/// parts: capacity, the dispatch sort, counts).
void onFirstThread(LoopEmitter &em, function_ref<void()> body);

/// Host side: launches `kernel` over `gridX` blocks of its block size.
void launch(LoopEmitter &em, gpu::GPUFuncOp kernel, Value gridX,
            ValueRange operands, Value gridY = Value());

/// Host side: ceil(tokens / kTokenBlock) blocks.
Value tokenBlocks(LoopEmitter &em, Value tokens);

/// Host side: a device buffer (dynamic sizes as in memref.alloc).
Value deviceAlloc(LoopEmitter &em, MemRefType type, ValueRange dynamicSizes);

/// The memref type a tensor operand is read through.
MemRefType bufferType(Value tensor);

} // namespace mlir::moe::gpu_kernels

#endif // MOE_COMPILER_CONVERSION_MOETOGPU_KERNELBUILDER_H
