//===- WarpgroupMma.cpp - Hopper warpgroup MMA with TMA loads -------------===//

#include "compiler/Conversion/MoEToGPU/WarpgroupMma.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/IR/SymbolTable.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
constexpr llvm::StringLiteral kSharedMemory = "moe_wgmma_shared";
constexpr unsigned kSharedSpace = 3;  // NVPTX shared
constexpr unsigned kClusterSpace = 7; // NVPTX shared::cluster
/// Suspend-time hint of a barrier wait, in nanoseconds.
constexpr int64_t kWaitHint = 10000000;

Type sharedPointer(MLIRContext *context) {
  return LLVM::LLVMPointerType::get(context, kSharedSpace);
}

Value i32(ImplicitLocOpBuilder &b, int64_t v) {
  return arith::ConstantOp::create(b, b.getI32IntegerAttr(int32_t(v)));
}
} // namespace

Value wgmma::sharedMemory(ImplicitLocOpBuilder &b, gpu::GPUModuleOp kernels) {
  MLIRContext *context = b.getContext();
  if (!SymbolTable::lookupSymbolIn(kernels, kSharedMemory)) {
    // A zero-sized array: the launch's dynamic shared memory (PTX
    // `.extern .shared .align 1024`).
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(kernels.getBody());
    LLVM::GlobalOp::create(
        b, LLVM::LLVMArrayType::get(IntegerType::get(context, 8), 0),
        /*isConstant=*/false, LLVM::Linkage::External, kSharedMemory,
        /*value=*/Attribute(), /*alignment=*/1024, kSharedSpace);
  }
  return LLVM::AddressOfOp::create(b, sharedPointer(context), kSharedMemory);
}

Value wgmma::sharedAt(ImplicitLocOpBuilder &b, Value base, Value bytes) {
  return LLVM::GEPOp::create(b, sharedPointer(b.getContext()), b.getI8Type(),
                             base, ValueRange{bytes});
}

Value wgmma::sharedAt(ImplicitLocOpBuilder &b, Value base, int64_t bytes) {
  return sharedAt(b, base, i32(b, bytes));
}

void wgmma::initBarrier(ImplicitLocOpBuilder &b, Value barrier) {
  NVVM::MBarrierInitOp::create(b, barrier, i32(b, 1), /*predicate=*/Value());
  NVVM::FenceMbarrierInitOp::create(b);
}

void wgmma::expectBytes(ImplicitLocOpBuilder &b, Value barrier,
                        int64_t bytes) {
  NVVM::MBarrierArriveExpectTxOp::create(
      b, /*res=*/Type(), barrier, i32(b, bytes), NVVM::MemScopeKind::CTA,
      /*relaxed=*/false, /*predicate=*/Value());
}

void wgmma::waitParity(ImplicitLocOpBuilder &b, Value barrier, Value parity) {
  NVVM::MBarrierTryWaitParityOp::create(b, barrier, parity,
                                        i32(b, kWaitHint));
}

void wgmma::loadTile(ImplicitLocOpBuilder &b, Value dst, Value tensorMap,
                     ValueRange coordinates, Value barrier) {
  // The CTA's own shared memory addressed as shared::cluster (a launch
  // without clusters is a cluster of one).
  Value cluster = LLVM::AddrSpaceCastOp::create(
      b, LLVM::LLVMPointerType::get(b.getContext(), kClusterSpace), dst);
  NVVM::CpAsyncBulkTensorGlobalToSharedClusterOp::create(
      b, cluster, tensorMap, coordinates, barrier,
      /*im2colOffsets=*/ValueRange{}, /*multicastMask=*/Value(),
      /*l2CacheHint=*/Value(), NVVM::TMALoadMode::TILE, /*isCTAOnly=*/false,
      /*group=*/NVVM::CTAGroupKindAttr(), /*predicate=*/Value());
}

Value wgmma::descriptor(ImplicitLocOpBuilder &b, Value tile, int64_t slice) {
  Type i64 = b.getI64Type();
  auto constant = [&](uint64_t v) -> Value {
    return arith::ConstantOp::create(b, b.getI64IntegerAttr(int64_t(v)));
  };
  Value address = LLVM::PtrToIntOp::create(b, i64, tile);
  // Start address: bits 0-13, in units of 16 bytes (of an 18-bit address).
  Value start = arith::ShRUIOp::create(
      b, arith::AndIOp::create(b, address, constant(0x3ffff)), constant(4));
  start = arith::AddIOp::create(b, start,
                                constant(uint64_t(slice * kStepK * 2) >> 4));
  uint64_t fixed = (uint64_t(16 >> 4) << 16)   // leading byte offset
                   | (uint64_t(1024 >> 4) << 32) // stride byte offset
                   | (uint64_t(1) << 62);        // SWIZZLE_128B
  return arith::OrIOp::create(b, start, constant(fixed));
}

Type wgmma::accumulatorType(MLIRContext *context, int64_t n) {
  return LLVM::LLVMStructType::getLiteral(
      context, SmallVector<Type>(n / 2, Float32Type::get(context)));
}

Value wgmma::zeroAccumulator(ImplicitLocOpBuilder &b, int64_t n) {
  return LLVM::ZeroOp::create(b, accumulatorType(b.getContext(), n));
}

Value wgmma::mma(ImplicitLocOpBuilder &b, Value descA, Value descB, Value acc,
                 int64_t n) {
  MLIRContext *context = b.getContext();
  // row (A) and col (B): both K-major, no transposition.
  return NVVM::WgmmaMmaAsyncOp::create(
      b, acc.getType(), acc, descA, descB,
      NVVM::MMAShapeAttr::get(context, kRows, n, kStepK),
      NVVM::WGMMATypes::bf16, NVVM::WGMMATypes::bf16, NVVM::WGMMATypes::f32,
      NVVM::WGMMAScaleOut::one, NVVM::WGMMAScaleIn::one,
      NVVM::WGMMAScaleIn::one, NVVM::MMALayout::row, NVVM::MMALayout::col,
      /*satfinite=*/NVVM::MMAIntOverflowAttr());
}

void wgmma::fence(ImplicitLocOpBuilder &b) { NVVM::WgmmaFenceAlignedOp::create(b); }

void wgmma::commit(ImplicitLocOpBuilder &b) {
  NVVM::WgmmaGroupSyncAlignedOp::create(b);
}

void wgmma::waitGroups(ImplicitLocOpBuilder &b, int64_t pending) {
  NVVM::WgmmaWaitGroupSyncOp::create(b, uint64_t(pending));
}

SmallVector<gpu_mma::Accumulator>
wgmma::fragments(ImplicitLocOpBuilder &b, Value acc, int64_t n) {
  SmallVector<gpu_mma::Accumulator> blocks;
  for (int64_t j = 0; j < n / 8; ++j) {
    gpu_mma::Accumulator c;
    for (int64_t i = 0; i < 4; ++i)
      c[i] = LLVM::ExtractValueOp::create(b, acc, 4 * j + i);
    blocks.push_back(c);
  }
  return blocks;
}
