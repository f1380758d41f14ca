//===- LoopEmitter.cpp - Building loop nests over memrefs -----------------===//

#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;

LoopEmitter::LoopEmitter(OpBuilder &builder, Location loc)
    : b(loc, builder) {
  b.setInsertionPoint(builder.getInsertionBlock(), builder.getInsertionPoint());
}

Value LoopEmitter::index(int64_t v) {
  return arith::ConstantIndexOp::create(b, v);
}
Value LoopEmitter::f32(double v) {
  return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
}
Value LoopEmitter::f32Like(Value like, double v) {
  auto vec = dyn_cast<VectorType>(like.getType());
  if (!vec)
    return f32(v);
  return arith::ConstantOp::create(
      b, vec, DenseElementsAttr::get(vec, b.getF32FloatAttr(v)));
}

Value LoopEmitter::i32Like(Value like, uint32_t v) {
  auto attr = b.getI32IntegerAttr(static_cast<int32_t>(v));
  auto vec = dyn_cast<VectorType>(like.getType());
  if (!vec)
    return arith::ConstantOp::create(b, attr);
  auto type = VectorType::get(vec.getShape(), b.getI32Type());
  return arith::ConstantOp::create(b, type, DenseElementsAttr::get(type, attr));
}

Value LoopEmitter::i32(int64_t v) {
  return arith::ConstantOp::create(b, b.getI32IntegerAttr(v));
}
Value LoopEmitter::i64(int64_t v) {
  return arith::ConstantOp::create(b, b.getI64IntegerAttr(v));
}

static arith::FastMathFlagsAttr flags(ImplicitLocOpBuilder &b, bool fast) {
  auto f = fast ? arith::FastMathFlags::reassoc | arith::FastMathFlags::contract
                : arith::FastMathFlags::none;
  return arith::FastMathFlagsAttr::get(b.getContext(), f);
}

Value LoopEmitter::add(Value a, Value c, bool fast) {
  return arith::AddFOp::create(b, a, c, flags(b, fast));
}
Value LoopEmitter::mul(Value a, Value c, bool fast) {
  return arith::MulFOp::create(b, a, c, flags(b, fast));
}

Value LoopEmitter::toBuffer(Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  auto memref = MemRefType::get(type.getShape(), type.getElementType());
  return bufferization::ToBufferOp::create(b, memref, tensor,
                                           /*read_only=*/true);
}

Value LoopEmitter::alloc(RankedTensorType type, ValueRange dynamicSizes) {
  return alloc(MemRefType::get(type.getShape(), type.getElementType()),
               dynamicSizes);
}

Value LoopEmitter::alloc(MemRefType type, ValueRange dynamicSizes) {
  // 64-byte alignment: whole cache lines, and aligned vector loads.
  return memref::AllocOp::create(b, type, dynamicSizes,
                                 b.getI64IntegerAttr(64));
}

Value LoopEmitter::toTensor(Value buffer, Type tensorType) {
  return bufferization::ToTensorOp::create(b, tensorType, buffer,
                                           /*restrict=*/true,
                                           /*writable=*/true);
}

Value LoopEmitter::scratch(MemRefType type, ValueRange dynamicSizes) {
  return memref::AllocaOp::create(b, type, dynamicSizes,
                                  b.getI64IntegerAttr(64));
}

void LoopEmitter::fill(Value buffer, Value value) {
  linalg::FillOp::create(b, ValueRange{value}, ValueRange{buffer});
}

Value LoopEmitter::dim(Value memref, unsigned d) {
  return memref::DimOp::create(b, memref, d);
}

Value LoopEmitter::load(Value memref, ValueRange indices) {
  Value v = memref::LoadOp::create(b, memref, indices);
  if (isa<FloatType>(v.getType()) && !v.getType().isF32())
    v = arith::ExtFOp::create(b, f32(), v);
  return v;
}

void LoopEmitter::store(Value value, Value memref, ValueRange indices) {
  Type element = cast<MemRefType>(memref.getType()).getElementType();
  if (isa<FloatType>(element) && element != value.getType())
    value = arith::TruncFOp::create(b, element, value);
  memref::StoreOp::create(b, value, memref, indices);
}

void LoopEmitter::storeRoundedToBF16(Value value, Value memref,
                                     ValueRange indices) {
  Type intType = b.getI32Type(), bf16Type = b.getBF16Type();
  if (auto vec = dyn_cast<VectorType>(value.getType())) {
    intType = VectorType::get(vec.getShape(), intType);
    bf16Type = VectorType::get(vec.getShape(), bf16Type);
  }
  // bits + 0x7fff + (bit 16 of bits), then the low half cleared.
  Value bits = arith::BitcastOp::create(b, intType, value);
  Value lsb = arith::AndIOp::create(
      b, arith::ShRUIOp::create(b, bits, i32Like(value, 16)),
      i32Like(value, 1));
  Value rounded = arith::AndIOp::create(
      b,
      arith::AddIOp::create(
          b, arith::AddIOp::create(b, bits, i32Like(value, 0x7fff)), lsb),
      i32Like(value, 0xffff0000u));
  Value isNaN =
      arith::CmpFOp::create(b, arith::CmpFPredicate::UNO, value, value);
  rounded = arith::SelectOp::create(b, isNaN, i32Like(value, 0x7fc00000u),
                                    rounded);
  Value stored;
  if (cast<MemRefType>(memref.getType()).getElementType().isBF16()) {
    Type i16Type = bf16Type == b.getBF16Type()
                       ? Type(b.getI16Type())
                       : VectorType::get(cast<VectorType>(bf16Type).getShape(),
                                         b.getI16Type());
    Value high = arith::TruncIOp::create(
        b, i16Type, arith::ShRUIOp::create(b, rounded, i32Like(value, 16)));
    stored = arith::BitcastOp::create(b, bf16Type, high);
  } else {
    stored = arith::BitcastOp::create(b, value.getType(), rounded);
  }
  if (isa<VectorType>(stored.getType()))
    vector::StoreOp::create(b, stored, memref, indices);
  else
    memref::StoreOp::create(b, stored, memref, indices);
}

Value LoopEmitter::toIndex(Value integer) {
  return arith::IndexCastOp::create(b, b.getIndexType(), integer);
}

Value LoopEmitter::fromIndex(Value index, Type integerType) {
  return arith::IndexCastOp::create(b, integerType, index);
}

void LoopEmitter::forEach(Value lb, Value ub, function_ref<void(Value)> body) {
  auto loop = scf::ForOp::create(b, lb, ub, index(1));
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(loop.getBody()->getTerminator());
  body(loop.getInductionVar());
}

void LoopEmitter::parallelForEach(Value lb, Value ub,
                                  function_ref<void(Value)> body) {
  auto loop = scf::ParallelOp::create(b, ValueRange{lb}, ValueRange{ub},
                                      ValueRange{index(1)});
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(loop.getBody()->getTerminator());
  body(loop.getInductionVars()[0]);
}

SmallVector<Value>
LoopEmitter::reduce(Value lb, Value ub, ValueRange init,
                    function_ref<SmallVector<Value>(Value, ValueRange)> body) {
  auto loop = scf::ForOp::create(b, lb, ub, index(1), init);
  {
    OpBuilder::InsertionGuard guard(b);
    Block *block = loop.getBody();
    if (!block->empty())
      block->getTerminator()->erase();
    b.setInsertionPointToEnd(block);
    SmallVector<Value> next = body(loop.getInductionVar(), loop.getRegionIterArgs());
    scf::YieldOp::create(b, next);
  }
  return SmallVector<Value>(loop.getResults());
}

Value LoopEmitter::sum(Value lb, Value ub, function_ref<Value(Value)> term,
                       bool fast) {
  return reduce(lb, ub, {f32(0.0)},
                [&](Value i, ValueRange acc) -> SmallVector<Value> {
                  return {add(acc[0], term(i), fast)};
                })[0];
}

void LoopEmitter::ifThen(Value cond, function_ref<void()> then) {
  auto op = scf::IfOp::create(b, cond, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(op.thenBlock()->getTerminator());
  then();
}

void LoopEmitter::ifThenElse(Value cond, function_ref<void()> then,
                             function_ref<void()> otherwise) {
  auto op = scf::IfOp::create(b, cond, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPoint(op.thenBlock()->getTerminator());
  then();
  b.setInsertionPoint(op.elseBlock()->getTerminator());
  otherwise();
}

Value LoopEmitter::exp(Value x) { return math::ExpOp::create(b, x); }

Value LoopEmitter::sigmoid(Value x) {
  // 1 / (1 + exp(-x)): exp overflows to +inf for very negative x, giving 0.
  Value negX = arith::NegFOp::create(b, x);
  Value one = f32Like(x, 1.0);
  return arith::DivFOp::create(b, one, add(one, exp(negX)));
}

Value LoopEmitter::activation(Activation kind, Value x) {
  Value half = f32Like(x, 0.5), one = f32Like(x, 1.0);
  switch (kind) {
  case Activation::silu:
    return mul(x, sigmoid(x));
  case Activation::relu:
    return arith::MaximumFOp::create(b, x, f32Like(x, 0.0));
  case Activation::gelu: {
    // 0.5 x (1 + erf(x / sqrt 2)), as torch's exact GELU.
    Value scaled = mul(x, f32Like(x, M_SQRT1_2));
    return mul(mul(half, x), add(one, math::ErfOp::create(b, scaled)));
  }
  case Activation::gelu_tanh: {
    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    Value cube = mul(mul(x, x), x);
    Value inner = mul(f32Like(x, std::sqrt(2.0 / M_PI)),
                      add(x, mul(f32Like(x, 0.044715), cube)));
    return mul(mul(half, x), add(one, math::TanhOp::create(b, inner)));
  }
  }
  llvm_unreachable("unknown activation");
}
