//===- MmaFragments.cpp - bf16 m16n8k16 tensor-core fragments -------------===//

#include "compiler/Conversion/MoEToGPU/MmaFragments.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::gpu_mma;

Lane gpu_mma::laneOf(ImplicitLocOpBuilder &b, Value laneId) {
  Value four = arith::ConstantIndexOp::create(b, 4);
  return {arith::DivUIOp::create(b, laneId, four),
          arith::RemUIOp::create(b, laneId, four)};
}

Value gpu_mma::loadPair(ImplicitLocOpBuilder &b, Value memref,
                        ValueRange indices) {
  Type element = cast<MemRefType>(memref.getType()).getElementType();
  auto bf16Pair = VectorType::get({2}, b.getBF16Type());
  Value pair;
  if (element.isBF16()) {
    pair = vector::LoadOp::create(b, bf16Pair, memref, indices,
                                  /*nontemporal=*/false, llvm::Align(4));
  } else {
    // The explicit alignment lets the pair be one 64-bit load (the
    // default is the element's, which splits it).
    llvm::Align pairAlign(element.getIntOrFloatBitWidth() / 4);
    Value wide = vector::LoadOp::create(b, VectorType::get({2}, element),
                                        memref, indices,
                                        /*nontemporal=*/false, pairAlign);
    pair = arith::TruncFOp::create(b, bf16Pair, wide);
  }
  Value packed = vector::BitCastOp::create(
      b, VectorType::get({1}, b.getI32Type()), pair);
  return vector::ExtractOp::create(b, packed, ArrayRef<int64_t>{0});
}

Accumulator gpu_mma::zeroAccumulator(ImplicitLocOpBuilder &b) {
  Value zero = arith::ConstantOp::create(b, b.getF32FloatAttr(0.0));
  return {zero, zero, zero, zero};
}

Accumulator gpu_mma::mma(ImplicitLocOpBuilder &b, const std::array<Value, 4> &a,
                         const std::array<Value, 2> &bFragment,
                         const Accumulator &c) {
  Type f32 = b.getF32Type();
  auto resultType = LLVM::LLVMStructType::getLiteral(b.getContext(),
                                                     {f32, f32, f32, f32});
  auto op = NVVM::MmaOp::create(
      b, resultType, ValueRange(a), ValueRange(bFragment), ValueRange(c),
      ArrayRef<int64_t>{16, 8, 16}, /*b1Op=*/std::nullopt,
      /*intOverflow=*/std::nullopt,
      std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16,
                                    NVVM::MMATypes::bf16},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                     NVVM::MMALayout::col});
  Accumulator d;
  for (int64_t i = 0; i < 4; ++i)
    d[i] = LLVM::ExtractValueOp::create(b, op.getResult(), i);
  return d;
}
