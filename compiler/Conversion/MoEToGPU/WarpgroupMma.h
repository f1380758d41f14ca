//===- WarpgroupMma.h - Hopper warpgroup MMA with TMA loads ----*- C++ -*-===//
//
// The pieces of an sm_90a matmul main loop, as NVVM ops: tiles of bf16
// operands copied from global to shared memory by the Tensor Memory
// Accelerator (`cp.async.bulk.tensor`, completion counted on an mbarrier),
// and `wgmma.mma_async` reading both operands from shared memory through
// matrix descriptors, 4 warps (one warpgroup) together.
//
// Both operands are K-major, as every MoE matmul here lies in memory
// (activation rows [rows, K], weight rows [N, K]): a tile is `rows` rows of
// 64 bf16 (128 bytes), stored by TMA with the 128-byte swizzle, and read by
// wgmma without transposition. Such a tile's descriptor: start address / 16,
// leading byte offset 16 (unused for swizzled K-major), stride byte offset
// 1024 (8 rows of 128 bytes), layout SWIZZLE_128B; the k-th 16-wide slice
// starts 32 k bytes further. Tiles must start on 1024-byte boundaries (the
// swizzle pattern's period), which the kernels' shared memory guarantees.
//
// The accumulator of an m64nNk16 wgmma: lane l = 4 g + t of warp w holds
// d[4 j + i], j < N / 8, at row 16 w + g + 8 (i / 2), column 8 j + 2 t +
// i % 2: per 8 columns the fragment of a 16 x 8 mma.sync block
// (MmaFragments.h), so the kernels' epilogues serve both.
// (PTX ISA: "Asynchronous Warpgroup Level Matrix Multiply-Accumulate",
// "Matrix Descriptor Format", "Tensor Copy".)
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_CONVERSION_MOETOGPU_WARPGROUPMMA_H
#define MOE_COMPILER_CONVERSION_MOETOGPU_WARPGROUPMMA_H

#include "compiler/Conversion/MoEToGPU/MmaFragments.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

namespace mlir::moe::wgmma {

/// Rows of one wgmma (m64) and of a block's tile; threads of a warpgroup.
constexpr int64_t kRows = 64;
constexpr int64_t kThreads = 128;
/// K per pipeline stage: one 128-byte swizzle row of bf16.
constexpr int64_t kStageK = 64;
/// K of one wgmma on bf16.
constexpr int64_t kStepK = 16;
/// Bytes of a CUtensorMap, passed to the kernels by value (64-aligned).
constexpr int64_t kTensorMapBytes = 128;
/// The kernel attribute holding how many leading parameters are tensor
/// maps (moe-gpu-tensor-map-params makes them by-value grid constants).
constexpr llvm::StringLiteral kTensorMapParamsAttr = "moe.tensor_map_params";

/// Bytes of a [rows, kStageK] bf16 tile.
constexpr int64_t tileBytes(int64_t rows) { return rows * kStageK * 2; }

// The descriptors assume one 128-byte swizzle row per tile row (the K
// slices are 32-byte steps inside it) and tiles on the swizzle pattern's
// 1024-byte period (base offset 0).
static_assert(kStageK * 2 == 128, "a tile row is one 128-byte swizzle row");
static_assert(tileBytes(8) == 1024, "8 tile rows are one swizzle period");

/// The kernel's dynamic shared memory (1024-byte aligned), declared once in
/// `kernels`.
Value sharedMemory(ImplicitLocOpBuilder &b, gpu::GPUModuleOp kernels);
/// `base` + `bytes` (an i32 or a constant).
Value sharedAt(ImplicitLocOpBuilder &b, Value base, Value bytes);
Value sharedAt(ImplicitLocOpBuilder &b, Value base, int64_t bytes);

/// The mbarrier at `barrier`: initialised for one arrival (the thread that
/// issues the copies), made visible to the async proxy.
void initBarrier(ImplicitLocOpBuilder &b, Value barrier);
/// Arrives on `barrier` expecting `bytes` more from copies.
void expectBytes(ImplicitLocOpBuilder &b, Value barrier, int64_t bytes);
/// Waits until the phase of parity `parity` (i32) of `barrier` completes.
void waitParity(ImplicitLocOpBuilder &b, Value barrier, Value parity);
/// Copies the box of `tensorMap` at `coordinates` (i32, innermost first)
/// to `dst`, counting its bytes on `barrier`.
void loadTile(ImplicitLocOpBuilder &b, Value dst, Value tensorMap,
              ValueRange coordinates, Value barrier);

/// The descriptor of the K-major tile at `tile`, advanced to its 16-wide K
/// slice `slice` (0..3).
Value descriptor(ImplicitLocOpBuilder &b, Value tile, int64_t slice);

/// The accumulator of an m64nNk16 wgmma: N / 2 f32 per thread.
Type accumulatorType(MLIRContext *context, int64_t n);
Value zeroAccumulator(ImplicitLocOpBuilder &b, int64_t n);
/// acc + A (64 x 16) * B (16 x n) from the descriptors (bf16, f32 sums).
Value mma(ImplicitLocOpBuilder &b, Value descA, Value descB, Value acc,
          int64_t n);
/// Orders accumulator registers before the wgmmas that follow.
void fence(ImplicitLocOpBuilder &b);
/// Commits the wgmmas issued since the last commit as one group.
void commit(ImplicitLocOpBuilder &b);
/// Waits until at most `pending` committed groups are still running (in
/// this warp).
void waitGroups(ImplicitLocOpBuilder &b, int64_t pending);
/// The accumulator as n / 8 fragments of 16 x 8 blocks.
SmallVector<gpu_mma::Accumulator> fragments(ImplicitLocOpBuilder &b,
                                            Value acc, int64_t n);

} // namespace mlir::moe::wgmma

#endif // MOE_COMPILER_CONVERSION_MOETOGPU_WARPGROUPMMA_H
