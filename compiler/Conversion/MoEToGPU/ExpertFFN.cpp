//===- ExpertFFN.cpp - Expert FFNs to tensor-core kernels -----------------===//
//
// An expert FFN becomes two kernels, each a grid of warps with 16 rows and
// 8 * kTilesPerWarp output columns per warp:
//   gate_up: h[r] = act(x_t W_gate^T) * (x_t W_up^T), t the row's token,
//            h kept in bf16 (the next matmul's A operand);
//   down:    out[r] = s_r * (h[r] W_down^T).
// For moe.expert_ffn the rows are the dispatch plan's (a warp's 16 rows lie
// in one tile, hence one expert; s_r is the row's routing weight, zero for
// padding rows). For moe.shared_expert the rows are the tokens, padded to a
// multiple of 16, and s_r is the sigmoid expert gate (or 1).
// Every product runs on bf16 tensor cores with f32 accumulation; f32
// weights and activations are rounded to bf16 as they are loaded. Each
// output element's K loop runs in one fixed order, so results do not depend
// on the launch.
//
//===----------------------------------------------------------------------===//

#include "compiler/Conversion/MoEToGPU/KernelBuilder.h"
#include "compiler/Conversion/MoEToGPU/MmaFragments.h"
#include "compiler/Conversion/MoEToGPU/PopulatePatterns.h"
#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::moe;
using gpu_mma::Accumulator;
using namespace mlir::moe::gpu_kernels;

namespace {
/// Output blocks of 8 columns per warp: 4 keeps the gate/up accumulators
/// (2 x 4 x 4 f32) in registers with room for the fragments.
constexpr int64_t kTilesPerWarp = 4;
constexpr int64_t kRowsPerWarp = 16;
constexpr int64_t kWarpSize = 32;

/// The FFN as the kernels see it: sizes, the expert weights, and where rows
/// come from.
struct FFNKernelSpec {
  Activation activation;
  int64_t hidden, width;
  Type xType, hType;
  Value gate, up, down; // tensors (gate may be null)
  // Routed experts (moe.expert_ffn): the plan's rows.
  bool routed = false;
  Type slotsType, tilesType, routingType;
  int64_t k = 1, tileRows = kRowsPerWarp;
  // Shared expert: the tokens; an optional sigmoid gate [1, hidden].
  Type expertGateType;
};

/// What a lane knows about its warp's rows.
struct WarpRows {
  gpu_mma::Lane lane;
  Value rowLo, rowHi;   // the rows of the lane's C fragment (g, g + 8)
  Value tokLo, tokHi;   // their tokens (clamped to a valid one)
  Value slotLo, slotHi; // routed: their slots (i32, -1 for padding)
  Value expert;         // routed: the tile's expert (index); shared: null
  Value colBase;        // the first output column of the warp
};

/// The token of a slot (padding rows read token 0; their results are
/// never used).
Value tokenOf(LoopEmitter &em, Value slot, int64_t k) {
  auto &b = em.builder();
  Value clamped = arith::MaxSIOp::create(b, slot, em.i32(0));
  return arith::DivUIOp::create(b, em.toIndex(clamped), em.index(k));
}

WarpRows emitWarpRows(LoopEmitter &em, const FFNKernelSpec &spec,
                      Value x, Value slots, Value tileExperts) {
  auto &b = em.builder();
  WarpRows w;
  w.lane = gpu_mma::laneOf(b, gpu::ThreadIdOp::create(b, gpu::Dimension::x));
  Value row0 = arith::MulIOp::create(
      b, gpu::BlockIdOp::create(b, gpu::Dimension::x), em.index(kRowsPerWarp));
  w.colBase = arith::MulIOp::create(
      b, gpu::BlockIdOp::create(b, gpu::Dimension::y),
      em.index(8 * kTilesPerWarp));
  w.rowLo = arith::AddIOp::create(b, row0, w.lane.g);
  w.rowHi = arith::AddIOp::create(b, w.rowLo, em.index(8));
  if (spec.routed) {
    w.slotLo = memref::LoadOp::create(b, slots, ValueRange{w.rowLo});
    w.slotHi = memref::LoadOp::create(b, slots, ValueRange{w.rowHi});
    Value tile = arith::DivUIOp::create(b, row0, em.index(spec.tileRows));
    w.expert =
        em.toIndex(memref::LoadOp::create(b, tileExperts, ValueRange{tile}));
    w.tokLo = tokenOf(em, w.slotLo, spec.k);
    w.tokHi = tokenOf(em, w.slotHi, spec.k);
  } else {
    // Rows past the last token (padding to 16) read the last token.
    Value last = arith::SubIOp::create(b, em.dim(x, 0), em.index(1));
    w.tokLo = arith::MinUIOp::create(b, w.rowLo, last);
    w.tokHi = arith::MinUIOp::create(b, w.rowHi, last);
  }
  return w;
}

/// body() unless the warp's 16 rows are all padding. A segment holds its
/// real rows first, so that is when the first row's slot is -1: whole
/// padding blocks (up to tile - 1 rows per expert, and the tail up to R_max)
/// cost a load, not a matmul. Uniform across the warp.
void ifRowsUsed(LoopEmitter &em, const FFNKernelSpec &spec, Value slots,
                function_ref<void()> body) {
  if (!spec.routed)
    return body();
  auto &b = em.builder();
  Value row0 = arith::MulIOp::create(
      b, gpu::BlockIdOp::create(b, gpu::Dimension::x), em.index(kRowsPerWarp));
  Value slot = memref::LoadOp::create(b, slots, ValueRange{row0});
  em.ifThen(
      arith::CmpIOp::create(b, arith::CmpIPredicate::sge, slot, em.i32(0)),
      body);
}

/// The indices of weight row n, column k: [expert, n, k] or [n, k].
SmallVector<Value> weightIndices(const WarpRows &w, Value n, Value k) {
  if (w.expert)
    return {w.expert, n, k};
  return {n, k};
}

/// The warp's 16 x (8 * kTilesPerWarp) block of A B_m^T for each weight
/// matrix m ([experts,] N, K), over K in steps of 16: [m][tile]
/// accumulators. A's rows are `aRowLo`/`aRowHi` of `a` ([?, K]). Columns
/// past N read the last weight row (their results are not stored), so every
/// lane of the warp issues every mma.
SmallVector<SmallVector<Accumulator>>
emitWarpMatmul(LoopEmitter &em, const WarpRows &w, Value a, Value aRowLo,
               Value aRowHi, ArrayRef<Value> weights, int64_t n, int64_t k) {
  auto &b = em.builder();
  size_t count = weights.size() * kTilesPerWarp;
  SmallVector<Value> init;
  for (size_t i = 0; i < count; ++i)
    llvm::append_range(init, gpu_mma::zeroAccumulator(b));

  SmallVector<Value> columns;
  for (int64_t j = 0; j < kTilesPerWarp; ++j) {
    Value col = arith::AddIOp::create(
        b, w.colBase, arith::AddIOp::create(b, em.index(8 * j), w.lane.g));
    columns.push_back(arith::MinUIOp::create(b, col, em.index(n - 1)));
  }
  Value twoT = arith::MulIOp::create(b, w.lane.t, em.index(2));

  SmallVector<Value> result = em.reduce(
      em.index(0), em.index(k / 16), init,
      [&](Value step, ValueRange acc) -> SmallVector<Value> {
        Value k0 = arith::AddIOp::create(
            b, arith::MulIOp::create(b, step, em.index(16)), twoT);
        Value k1 = arith::AddIOp::create(b, k0, em.index(8));
        std::array<Value, 4> aFrag = {
            gpu_mma::loadPair(b, a, {aRowLo, k0}),
            gpu_mma::loadPair(b, a, {aRowHi, k0}),
            gpu_mma::loadPair(b, a, {aRowLo, k1}),
            gpu_mma::loadPair(b, a, {aRowHi, k1})};
        SmallVector<Value> next;
        for (auto [m, weight] : llvm::enumerate(weights)) {
          for (int64_t j = 0; j < kTilesPerWarp; ++j) {
            std::array<Value, 2> bFrag = {
                gpu_mma::loadPair(b, weight, weightIndices(w, columns[j], k0)),
                gpu_mma::loadPair(b, weight, weightIndices(w, columns[j], k1))};
            size_t at = 4 * (m * kTilesPerWarp + j);
            Accumulator c = {acc[at], acc[at + 1], acc[at + 2], acc[at + 3]};
            llvm::append_range(next, gpu_mma::mma(b, aFrag, bFrag, c));
          }
        }
        return next;
      });

  SmallVector<SmallVector<Accumulator>> blocks(weights.size());
  for (size_t m = 0; m < weights.size(); ++m)
    for (int64_t j = 0; j < kTilesPerWarp; ++j) {
      size_t at = 4 * (m * kTilesPerWarp + j);
      blocks[m].push_back(
          {result[at], result[at + 1], result[at + 2], result[at + 3]});
    }
  return blocks;
}

/// Stores (v0, v1) at memref[row, col], memref[row, col + 1].
void storePair(LoopEmitter &em, Value v0, Value v1, Value memref, Value row,
               Value col) {
  auto &b = em.builder();
  Type element = cast<MemRefType>(memref.getType()).getElementType();
  Value pair = vector::FromElementsOp::create(
      b, VectorType::get({2}, em.f32()), ValueRange{v0, v1});
  if (element != em.f32())
    pair = arith::TruncFOp::create(b, VectorType::get({2}, element), pair);
  vector::StoreOp::create(b, pair, memref, ValueRange{row, col},
                          /*nontemporal=*/false,
                          llvm::Align(element.getIntOrFloatBitWidth() / 4));
}

/// For each of the warp's column tiles inside [0, n): body(tile, column of
/// the lane's first pair).
void forEachStoredTile(LoopEmitter &em, const WarpRows &w, int64_t n,
                       function_ref<void(int64_t, Value)> body) {
  auto &b = em.builder();
  Value twoT = arith::MulIOp::create(b, w.lane.t, em.index(2));
  for (int64_t j = 0; j < kTilesPerWarp; ++j) {
    Value col = arith::AddIOp::create(
        b, arith::AddIOp::create(b, w.colBase, em.index(8 * j)), twoT);
    Value inside = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, col,
                                         em.index(n));
    em.ifThen(inside, [&] { body(j, col); });
  }
}

/// The gate_up and down kernels of `spec`, their arguments:
///   gate_up: x, [slots, tiles,] [gate,] up, h
///   down:    h, x, [slots, tiles,] down, [routing weights | expert gate,] out
std::pair<gpu::GPUFuncOp, gpu::GPUFuncOp>
createFFNKernels(OpBuilder &builder, gpu::GPUModuleOp kernels,
                 const FFNKernelSpec &spec, Type outType, Location loc) {
  bool gated = bool(spec.gate);
  size_t planArgs = spec.routed ? 2 : 0;
  SmallVector<Type> gateUpArgs = {spec.xType};
  if (spec.routed)
    gateUpArgs.append({spec.slotsType, spec.tilesType});
  size_t matrices = gated ? 2 : 1;
  if (gated)
    gateUpArgs.push_back(bufferType(spec.gate));
  gateUpArgs.push_back(bufferType(spec.up));
  gateUpArgs.push_back(spec.hType);
  gpu::GPUFuncOp gateUp = createKernel(
      builder, kernels,
      spec.routed ? "expert_ffn_gate_up" : "shared_ffn_gate_up",
      gateUpArgs, kWarpSize, loc, [&](LoopEmitter &em, ValueRange args) {
        ifRowsUsed(em, spec, spec.routed ? args[1] : Value(), [&] {
          Value x = args[0];
          WarpRows w = spec.routed ? emitWarpRows(em, spec, x, args[1], args[2])
                                   : emitWarpRows(em, spec, x, {}, {});
          SmallVector<Value> weights(args.slice(1 + planArgs, matrices));
          Value h = args.back();
          auto blocks = emitWarpMatmul(em, w, x, w.tokLo, w.tokHi, weights,
                                       spec.width, spec.hidden);
          forEachStoredTile(em, w, spec.width, [&](int64_t j, Value col) {
            auto value = [&](int64_t i) {
              Value v = em.activation(spec.activation, blocks[0][j][i]);
              return gated ? em.mul(v, blocks[1][j][i]) : v;
            };
            storePair(em, value(0), value(1), h, w.rowLo, col);
            storePair(em, value(2), value(3), h, w.rowHi, col);
          });
        });
      });

  SmallVector<Type> downArgs = {spec.hType, spec.xType};
  if (spec.routed)
    downArgs.append({spec.slotsType, spec.tilesType});
  downArgs.push_back(bufferType(spec.down));
  if (spec.routed)
    downArgs.push_back(spec.routingType);
  else if (spec.expertGateType)
    downArgs.push_back(spec.expertGateType);
  downArgs.push_back(outType);
  gpu::GPUFuncOp down = createKernel(
      builder, kernels, spec.routed ? "expert_ffn_down" : "shared_ffn_down",
      downArgs, kWarpSize, loc, [&](LoopEmitter &em, ValueRange args) {
        ifRowsUsed(em, spec, spec.routed ? args[2] : Value(), [&] {
          auto &b = em.builder();
          Value h = args[0], x = args[1];
          WarpRows w = spec.routed ? emitWarpRows(em, spec, x, args[2], args[3])
                                   : emitWarpRows(em, spec, x, {}, {});
          Value downWeight = args[2 + planArgs];
          Value out = args.back();
          std::function<Value(Value, Value)> scaleOf;
          if (spec.routed) {
            // The routing weight of a row's slot; 0 for padding rows.
            Value routing = args[3 + planArgs];
            scaleOf = [&, routing](Value slot, Value token) -> Value {
              Value clamped =
                  em.toIndex(arith::MaxSIOp::create(b, slot, em.i32(0)));
              Value choice =
                  arith::RemUIOp::create(b, clamped, em.index(spec.k));
              Value weight = em.load(routing, {token, choice});
              Value valid = arith::CmpIOp::create(b, arith::CmpIPredicate::sge,
                                                  slot, em.i32(0));
              return arith::SelectOp::create(b, valid, weight, em.f32(0.0));
            };
          } else if (spec.expertGateType) {
            // g_t = sigmoid(x_t . expert_gate[0]), in a fixed order.
            Value expertGate = args[3 + planArgs];
            scaleOf = [&, expertGate, x](Value, Value token) -> Value {
              Value dot = em.sum(
                  em.index(0), em.index(spec.hidden),
                  [&](Value i) {
                    return em.mul(em.load(x, {token, i}),
                                  em.load(expertGate, {em.index(0), i}));
                  },
                  /*fast=*/false);
              return em.sigmoid(dot);
            };
          } else {
            scaleOf = [&](Value, Value) -> Value { return em.f32(1.0); };
          }
          Value scaleLo = scaleOf(w.slotLo, w.tokLo);
          Value scaleHi = scaleOf(w.slotHi, w.tokHi);
          auto blocks = emitWarpMatmul(em, w, h, w.rowLo, w.rowHi, {downWeight},
                                       spec.hidden, spec.width);
          forEachStoredTile(em, w, spec.hidden, [&](int64_t j, Value col) {
            const Accumulator &c = blocks[0][j];
            storePair(em, em.mul(c[0], scaleLo), em.mul(c[1], scaleLo), out,
                      w.rowLo, col);
            storePair(em, em.mul(c[2], scaleHi), em.mul(c[3], scaleHi), out,
                      w.rowHi, col);
          });
        });
      });
  return {gateUp, down};
}

/// Host side: h and the output on the device, the two launches over `rows`
/// (a multiple of 16) rows.
Value emitFFNLaunches(LoopEmitter &em, const FFNKernelSpec &spec,
                      gpu::GPUFuncOp gateUp, gpu::GPUFuncOp down,
                      MemRefType outType, Value rows, Value x,
                      ArrayRef<Value> plan, Value scale) {
  auto &b = em.builder();
  Value h = deviceAlloc(em, cast<MemRefType>(spec.hType), {rows});
  Value out = deviceAlloc(em, outType, {rows});
  Value rowBlocks = arith::DivUIOp::create(b, rows, em.index(kRowsPerWarp));
  auto colBlocks = [&](int64_t n) {
    int64_t perWarp = 8 * kTilesPerWarp;
    return em.index((n + perWarp - 1) / perWarp);
  };
  SmallVector<Value> gateUpOperands = {x};
  llvm::append_range(gateUpOperands, plan);
  if (spec.gate)
    gateUpOperands.push_back(em.toBuffer(spec.gate));
  gateUpOperands.push_back(em.toBuffer(spec.up));
  gateUpOperands.push_back(h);
  launch(em, gateUp, rowBlocks, gateUpOperands, colBlocks(spec.width));
  SmallVector<Value> downOperands = {h, x};
  llvm::append_range(downOperands, plan);
  downOperands.push_back(em.toBuffer(spec.down));
  if (scale)
    downOperands.push_back(scale);
  downOperands.push_back(out);
  launch(em, down, rowBlocks, downOperands, colBlocks(spec.hidden));
  gpu::DeallocOp::create(b, /*asyncToken=*/Type(), ValueRange{}, h);
  return out;
}

MemRefType bf16Rows(OpBuilder &b, int64_t width) {
  return MemRefType::get({ShapedType::kDynamic, width}, b.getBF16Type());
}

/// What routed and shared expert FFNs have in common: sizes, activation,
/// weights.
template <typename FFNOp>
FFNKernelSpec specOf(FFNOp op, OpBuilder &b) {
  FFNKernelSpec spec;
  spec.activation = op.getActivation();
  spec.hidden = op.getInput().getType().getDimSize(1);
  spec.width = op.getWidth();
  spec.xType = bufferType(op.getInput());
  spec.hType = bf16Rows(b, spec.width);
  spec.gate = op.getGate();
  spec.up = op.getUp();
  spec.down = op.getDown();
  return spec;
}

struct ExpertFFNToGPU : KernelPattern<ExpertFFNOp> {
  using KernelPattern::KernelPattern;

  LogicalResult matchAndRewrite(ExpertFFNOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(checkExpertFFNForGPU(op)))
      return failure();
    FFNKernelSpec spec = specOf(op, rewriter);
    spec.routed = true;
    spec.slotsType = bufferType(op.getSortedSlots());
    spec.tilesType = bufferType(op.getTileExperts());
    spec.routingType = bufferType(op.getWeights());
    spec.k = op.getWeights().getType().getDimSize(1);
    spec.tileRows = op.getTileRows();
    MemRefType outType = bufferType(op.getOutput());
    auto [gateUp, down] =
        createFFNKernels(rewriter, kernels, spec, outType, op.getLoc());

    LoopEmitter em(rewriter, op.getLoc());
    Value slots = em.toBuffer(op.getSortedSlots());
    Value tiles = em.toBuffer(op.getTileExperts());
    Value out = emitFFNLaunches(em, spec, gateUp, down, outType,
                                em.dim(slots, 0), em.toBuffer(op.getInput()),
                                {slots, tiles}, em.toBuffer(op.getWeights()));
    rewriter.replaceOp(op, em.toTensor(out, op.getOutput().getType()));
    return success();
  }
};

struct SharedExpertToGPU : KernelPattern<SharedExpertOp> {
  using KernelPattern::KernelPattern;

  LogicalResult matchAndRewrite(SharedExpertOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(checkSharedExpertForGPU(op)))
      return failure();
    FFNKernelSpec spec = specOf(op, rewriter);
    if (op.getExpertGate())
      spec.expertGateType = bufferType(op.getExpertGate());
    MemRefType outType = bufferType(op.getOutput());
    auto [gateUp, down] =
        createFFNKernels(rewriter, kernels, spec, outType, op.getLoc());

    // One row per token, padded to whole warps; the rows past the last
    // token are computed and never read.
    LoopEmitter em(rewriter, op.getLoc());
    auto &b = em.builder();
    Value x = em.toBuffer(op.getInput());
    Value rows = arith::MulIOp::create(
        b,
        arith::CeilDivUIOp::create(b, em.dim(x, 0), em.index(kRowsPerWarp)),
        em.index(kRowsPerWarp));
    Value gate = op.getExpertGate() ? em.toBuffer(op.getExpertGate()) : Value();
    Value out = emitFFNLaunches(em, spec, gateUp, down, outType, rows, x, {},
                                gate);
    rewriter.replaceOp(op, em.toTensor(out, op.getOutput().getType()));
    return success();
  }
};
} // namespace

LogicalResult mlir::moe::checkFFNForGPU(Operation *op, int64_t hidden,
                                        int64_t width, int64_t tileRows,
                                        int64_t weightPanel,
                                        ArrayRef<Value> weights) {
  if (weightPanel != 0)
    return op->emitOpError("the cuda target reads unpacked weights, not "
                           "weight_panel = ")
           << weightPanel;
  if (auto type = op->getAttrOfType<TypeAttr>("activation_type");
      type && !type.getValue().isBF16())
    return op->emitOpError("the cuda target multiplies bf16 activations "
                           "(tensor cores), not activation_type = ")
           << type.getValue();
  if (hidden % 16 != 0)
    return op->emitOpError("the cuda target needs the hidden size to be a "
                           "multiple of 16 (bf16 mma k-step), got ")
           << hidden;
  if (width % 16 != 0)
    return op->emitOpError("the cuda target needs the expert width to be a "
                           "multiple of 16 (bf16 mma k-step), got ")
           << width;
  if (tileRows % kRowsPerWarp != 0)
    return op->emitOpError("the cuda target needs tile_rows to be a multiple "
                           "of 16 (one warp's rows), got ")
           << tileRows;
  for (Value weight : weights) {
    if (!weight)
      continue;
    Type element = cast<ShapedType>(weight.getType()).getElementType();
    if (!element.isF32() && !element.isBF16())
      return op->emitOpError("the cuda target reads f32 or bf16 expert "
                             "weights, got ")
             << element;
  }
  return success();
}

LogicalResult mlir::moe::checkExpertFFNForGPU(ExpertFFNOp op) {
  return checkFFNForGPU(op, op.getInput().getType().getDimSize(1),
                        op.getWidth(), op.getTileRows(), op.getWeightPanel(),
                        {op.getGate(), op.getUp(), op.getDown()});
}

LogicalResult mlir::moe::checkSharedExpertForGPU(SharedExpertOp op) {
  return checkFFNForGPU(op, op.getInput().getType().getDimSize(1),
                        op.getWidth(), kRowsPerWarp, op.getWeightPanel(),
                        {op.getGate(), op.getUp(), op.getDown()});
}

void mlir::moe::populateExpertFFNToGPUPatterns(RewritePatternSet &patterns,
                                               gpu::GPUModuleOp kernels) {
  patterns.add<ExpertFFNToGPU, SharedExpertToGPU>(patterns.getContext(),
                                                  kernels);
}
