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
  KernelPattern(MLIRContext *context, gpu::GPUModuleOp kernels,
                PatternBenefit benefit = 1)
      : OpRewritePattern<OpT>(context, benefit), kernels(kernels) {}
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

/// A kernel `name(indices, chunk_counts)` running emitChunkHistogram
/// (Emitters.h) one thread per chunk of slots: phase 1 of the dispatch,
/// the statistics and the capacity. Launch it over tokenBlocks(chunks).
gpu::GPUFuncOp createChunkHistogramKernel(OpBuilder &builder,
                                          gpu::GPUModuleOp kernels,
                                          StringRef name,
                                          MemRefType indicesType,
                                          int64_t numExperts, Location loc);

/// In a kernel launched over ceil(count / kTokenBlock) blocks of
/// kTokenBlock threads: body(i) for this thread's item i < count (a token,
/// a chunk of slots, an expert).
void forThisThread(LoopEmitter &em, Value count,
                   function_ref<void(Value)> body);
inline void forThisToken(LoopEmitter &em, Value tokens,
                         function_ref<void(Value)> body) {
  forThisThread(em, tokens, body);
}

/// In a kernel launched as one block of `blockSize` threads: body(i) for
/// i = thread, thread + blockSize, ... < count.
void forEachOfBlock(LoopEmitter &em, int64_t blockSize, Value count,
                    function_ref<void(Value)> body);

/// A barrier of the block: its threads' memory writes before it are seen
/// by all of them after it.
void blockBarrier(LoopEmitter &em);

/// In a kernel: body() on thread 0 of block 0 only (the order-dependent
/// parts: capacity, the dispatch's padded offsets).
void onFirstThread(LoopEmitter &em, function_ref<void()> body);

/// Host side: launches `kernel` over `gridX` (x `gridY`) blocks of its
/// block size, with `sharedBytes` of dynamic shared memory.
void launch(LoopEmitter &em, gpu::GPUFuncOp kernel, Value gridX,
            ValueRange operands, Value gridY = Value(),
            int64_t sharedBytes = 0);

/// Host side: ceil(count / kTokenBlock) blocks, for forThisThread.
Value tokenBlocks(LoopEmitter &em, Value tokens);

/// Host side: a device buffer (dynamic sizes as in memref.alloc).
Value deviceAlloc(LoopEmitter &em, MemRefType type, ValueRange dynamicSizes);

/// The memref type a tensor operand is read through.
MemRefType bufferType(Value tensor);

} // namespace mlir::moe::gpu_kernels

#endif // MOE_COMPILER_CONVERSION_MOETOGPU_KERNELBUILDER_H
