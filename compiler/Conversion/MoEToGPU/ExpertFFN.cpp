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
// Two ways to run the matmuls (GPUMma):
//  - sync: one warp per block, `mma.sync` m16n8k16 with both operands read
//    from global memory (any sm_80+ GPU).
//  - warpgroup (sm_90a): a gather kernel first copies the rows' x, rounded
//    to bf16, into a row-ordered buffer (TMA cannot gather rows; padding
//    rows are left unwritten, their results never read); then one
//    warpgroup per 64 rows x WarpgroupTiles::gateUpCols (downCols) columns
//    runs `wgmma.mma_async` on tiles that TMA copies into shared memory, a
//    pipeline of WarpgroupTiles::stages tiles of 64 inputs (WarpgroupMma.h).
//    Rows and columns past the buffers' ends are filled with zeros by TMA,
//    so K and N need no multiple of 64; a block's 64 rows lie in one plan
//    tile (tile_rows is a multiple of 64), hence one expert.
//
//===----------------------------------------------------------------------===//

#include "compiler/Conversion/MoEToGPU/KernelBuilder.h"
#include "compiler/Conversion/MoEToGPU/MmaFragments.h"
#include "compiler/Conversion/MoEToGPU/PopulatePatterns.h"
#include "compiler/Conversion/MoEToGPU/WarpgroupMma.h"
#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
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
/// The most dynamic shared memory an sm_90 block may opt in to (227 KB).
constexpr int64_t kMaxSharedBytes = 232448;

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

MemRefType bf16Rows(OpBuilder &b, int64_t width) {
  return MemRefType::get({ShapedType::kDynamic, width}, b.getBF16Type());
}

/// The lane's rows when its warp's 16 rows start at `row0` and its
/// columns at `colBase`; `plan` is the slots and the tiles' experts
/// (routed), `x` the tokens (shared experts; null where no token is read).
WarpRows emitWarpRows(LoopEmitter &em, const FFNKernelSpec &spec, Value x,
                      ValueRange plan, Value row0, Value colBase) {
  auto &b = em.builder();
  WarpRows w;
  Value thread = gpu::ThreadIdOp::create(b, gpu::Dimension::x);
  w.lane = gpu_mma::laneOf(
      b, arith::RemUIOp::create(b, thread, em.index(kWarpSize)));
  w.colBase = colBase;
  w.rowLo = arith::AddIOp::create(b, row0, w.lane.g);
  w.rowHi = arith::AddIOp::create(b, w.rowLo, em.index(8));
  if (spec.routed) {
    w.slotLo = memref::LoadOp::create(b, plan[0], ValueRange{w.rowLo});
    w.slotHi = memref::LoadOp::create(b, plan[0], ValueRange{w.rowHi});
    Value tile = arith::DivUIOp::create(b, row0, em.index(spec.tileRows));
    w.expert =
        em.toIndex(memref::LoadOp::create(b, plan[1], ValueRange{tile}));
    w.tokLo = tokenOf(em, w.slotLo, spec.k);
    w.tokHi = tokenOf(em, w.slotHi, spec.k);
  } else if (x) {
    // Rows past the last token (padding) read the last token.
    Value last = arith::SubIOp::create(b, em.dim(x, 0), em.index(1));
    w.tokLo = arith::MinUIOp::create(b, w.rowLo, last);
    w.tokHi = arith::MinUIOp::create(b, w.rowHi, last);
  }
  return w;
}

/// The first of this block's `rows` rows (grid x).
Value blockFirstRow(LoopEmitter &em, int64_t rows) {
  auto &b = em.builder();
  return arith::MulIOp::create(
      b, gpu::BlockIdOp::create(b, gpu::Dimension::x), em.index(rows));
}

/// The first of this block's `cols` output columns (grid y).
Value blockFirstColumn(LoopEmitter &em, int64_t cols) {
  auto &b = em.builder();
  return arith::MulIOp::create(
      b, gpu::BlockIdOp::create(b, gpu::Dimension::y), em.index(cols));
}

/// body() unless the block's rows (from `row0`) are all padding. A
/// segment holds its real rows first, so that is when the first row's slot
/// is -1: whole padding blocks (up to tile - 1 rows per expert, and the
/// tail up to R_max) cost a load, not a matmul. Uniform across the block.
void ifRowsUsed(LoopEmitter &em, const FFNKernelSpec &spec, Value slots,
                Value row0, function_ref<void()> body) {
  if (!spec.routed)
    return body();
  auto &b = em.builder();
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

/// For each of the warp's `tiles` column tiles inside [0, n): body(tile,
/// column of the lane's first pair).
void forEachStoredTile(LoopEmitter &em, const WarpRows &w, int64_t n,
                       int64_t tiles,
                       function_ref<void(int64_t, Value)> body) {
  auto &b = em.builder();
  Value twoT = arith::MulIOp::create(b, w.lane.t, em.index(2));
  for (int64_t j = 0; j < tiles; ++j) {
    Value col = arith::AddIOp::create(
        b, arith::AddIOp::create(b, w.colBase, em.index(8 * j)), twoT);
    Value inside = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, col,
                                         em.index(n));
    em.ifThen(inside, [&] { body(j, col); });
  }
}

/// The gate/up epilogue: h[row, col] = act(gate) * up (or act(up)) as bf16,
/// from the 16 x 8 blocks [matrix][tile] of the lane's warp.
void storeHidden(LoopEmitter &em, const FFNKernelSpec &spec, const WarpRows &w,
                 ArrayRef<SmallVector<Accumulator>> blocks, Value h) {
  bool gated = blocks.size() == 2;
  int64_t tiles = int64_t(blocks[0].size());
  forEachStoredTile(em, w, spec.width, tiles, [&](int64_t j, Value col) {
    auto value = [&](int64_t i) {
      Value v = em.activation(spec.activation, blocks[0][j][i]);
      return gated ? em.mul(v, blocks[1][j][i]) : v;
    };
    storePair(em, value(0), value(1), h, w.rowLo, col);
    storePair(em, value(2), value(3), h, w.rowHi, col);
  });
}

/// The down epilogue's scale of a row (its slot, its token): the routing
/// weight of the slot (0 for padding rows), the shared expert's sigmoid
/// gate sigmoid(x_t . expert_gate[0]) in a fixed order, or 1. `scale` is
/// the routing weights or the expert gate (or null).
std::function<Value(Value, Value)> rowScale(LoopEmitter &em,
                                            const FFNKernelSpec &spec,
                                            Value x, Value scale) {
  auto &b = em.builder();
  if (spec.routed)
    return [&em, &b, &spec, scale](Value slot, Value token) -> Value {
      Value clamped = em.toIndex(arith::MaxSIOp::create(b, slot, em.i32(0)));
      Value choice = arith::RemUIOp::create(b, clamped, em.index(spec.k));
      Value weight = em.load(scale, {token, choice});
      Value valid =
          arith::CmpIOp::create(b, arith::CmpIPredicate::sge, slot, em.i32(0));
      return arith::SelectOp::create(b, valid, weight, em.f32(0.0));
    };
  if (scale)
    return [&em, &spec, scale, x](Value, Value token) -> Value {
      Value dot = em.sum(
          em.index(0), em.index(spec.hidden),
          [&](Value i) {
            return em.mul(em.load(x, {token, i}),
                          em.load(scale, {em.index(0), i}));
          },
          /*fast=*/false);
      return em.sigmoid(dot);
    };
  return [&em](Value, Value) -> Value { return em.f32(1.0); };
}

/// The down epilogue: out[row, col] = scale(row) * block, f32.
void storeOutput(LoopEmitter &em, const FFNKernelSpec &spec, const WarpRows &w,
                 ArrayRef<Accumulator> blocks, Value x, Value scale,
                 Value out) {
  auto scaleOf = rowScale(em, spec, x, scale);
  Value scaleLo = scaleOf(w.slotLo, w.tokLo);
  Value scaleHi = scaleOf(w.slotHi, w.tokHi);
  forEachStoredTile(em, w, spec.hidden, int64_t(blocks.size()),
                    [&](int64_t j, Value col) {
                      const Accumulator &c = blocks[j];
                      storePair(em, em.mul(c[0], scaleLo),
                                em.mul(c[1], scaleLo), out, w.rowLo, col);
                      storePair(em, em.mul(c[2], scaleHi),
                                em.mul(c[3], scaleHi), out, w.rowHi, col);
                    });
}

/// The type of the down kernel's scale argument: the routing weights, the
/// shared expert's gate, or null.
Type scaleType(const FFNKernelSpec &spec) {
  if (spec.routed)
    return spec.routingType;
  return spec.expertGateType;
}

/// The mma.sync gate_up and down kernels of `spec`, their arguments:
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
  auto warpRows = [&](LoopEmitter &em, Value x, ValueRange plan) {
    Value row0 = blockFirstRow(em, kRowsPerWarp);
    Value colBase = blockFirstColumn(em, 8 * kTilesPerWarp);
    return emitWarpRows(em, spec, x, plan, row0, colBase);
  };
  gpu::GPUFuncOp gateUp = createKernel(
      builder, kernels,
      spec.routed ? "expert_ffn_gate_up" : "shared_ffn_gate_up",
      gateUpArgs, kWarpSize, loc, [&](LoopEmitter &em, ValueRange args) {
        ValueRange plan = args.slice(1, planArgs);
        Value row0 = blockFirstRow(em, kRowsPerWarp);
        ifRowsUsed(em, spec, spec.routed ? plan[0] : Value(), row0, [&] {
          Value x = args[0];
          WarpRows w = warpRows(em, x, plan);
          SmallVector<Value> weights(args.slice(1 + planArgs, matrices));
          auto blocks = emitWarpMatmul(em, w, x, w.tokLo, w.tokHi, weights,
                                       spec.width, spec.hidden);
          storeHidden(em, spec, w, blocks, args.back());
        });
      });

  SmallVector<Type> downArgs = {spec.hType, spec.xType};
  if (spec.routed)
    downArgs.append({spec.slotsType, spec.tilesType});
  downArgs.push_back(bufferType(spec.down));
  if (Type scale = scaleType(spec))
    downArgs.push_back(scale);
  downArgs.push_back(outType);
  gpu::GPUFuncOp down = createKernel(
      builder, kernels, spec.routed ? "expert_ffn_down" : "shared_ffn_down",
      downArgs, kWarpSize, loc, [&](LoopEmitter &em, ValueRange args) {
        ValueRange plan = args.slice(2, planArgs);
        Value row0 = blockFirstRow(em, kRowsPerWarp);
        ifRowsUsed(em, spec, spec.routed ? plan[0] : Value(), row0, [&] {
          Value h = args[0], x = args[1];
          WarpRows w = warpRows(em, x, plan);
          Value scale = scaleType(spec) ? args[3 + planArgs] : Value();
          auto blocks = emitWarpMatmul(em, w, h, w.rowLo, w.rowHi,
                                       {args[2 + planArgs]}, spec.hidden,
                                       spec.width);
          storeOutput(em, spec, w, blocks[0], x, scale, args.back());
        });
      });
  return {gateUp, down};
}

/// Dynamic shared memory of a warpgroup matmul over `matrices` weight
/// matrices of `n` columns: `stages` stages, then their mbarriers.
int64_t warpgroupSharedBytes(int64_t matrices, int64_t n, int64_t stages) {
  int64_t stage =
      wgmma::tileBytes(wgmma::kRows) + matrices * wgmma::tileBytes(n);
  return stages * stage + 8 * stages;
}

/// The block's 64 x n products A B_m^T over K, one accumulator per weight
/// matrix: A's rows from `row0` in `mapA` ([rows, K]), B_m's rows from
/// `col0` in `mapsB[m]` ([N, K], or [experts, N, K] with `expert`). One
/// thread issues the copies of a stage; all wait for its mbarrier and issue
/// the stage's wgmmas as one group, then wait for the previous block's
/// group (one group stays in flight) and meet at a barrier, after which
/// the previous block's stage is refilled with the block `stages` - 1
/// ahead.
SmallVector<Value> emitWarpgroupMatmul(LoopEmitter &em,
                                       gpu::GPUModuleOp kernels, Value mapA,
                                       ArrayRef<Value> mapsB, Value row0,
                                       Value col0, Value expert, int64_t n,
                                       int64_t k, int64_t stages) {
  auto &b = em.builder();
  Type i32 = b.getI32Type();
  auto toI32 = [&](Value index) -> Value {
    return arith::IndexCastUIOp::create(b, i32, index);
  };
  int64_t matrices = int64_t(mapsB.size());
  int64_t tileA = wgmma::tileBytes(wgmma::kRows), tileB = wgmma::tileBytes(n);
  int64_t stageBytes = tileA + matrices * tileB;
  int64_t kBlocks = (k + wgmma::kStageK - 1) / wgmma::kStageK;

  Value shared = wgmma::sharedMemory(b, kernels);
  auto stageAt = [&](Value stage, int64_t offset) {
    Value bytes = arith::AddIOp::create(
        b, arith::MulIOp::create(b, stage, em.i32(stageBytes)),
        em.i32(offset));
    return wgmma::sharedAt(b, shared, bytes);
  };
  auto barrierOf = [&](Value stage) {
    Value bytes = arith::AddIOp::create(
        b, arith::MulIOp::create(b, stage, em.i32(8)),
        em.i32(stages * stageBytes));
    return wgmma::sharedAt(b, shared, bytes);
  };
  Value first = arith::CmpIOp::create(
      b, arith::CmpIPredicate::eq,
      gpu::ThreadIdOp::create(b, gpu::Dimension::x), em.index(0));
  Value rowCoord = toI32(row0), colCoord = toI32(col0);
  Value expertCoord = expert ? toI32(expert) : Value();

  // Copies K block `block` (index) into `stage` (i32).
  auto issue = [&](Value block, Value stage) {
    Value barrier = barrierOf(stage);
    wgmma::expectBytes(b, barrier, stageBytes);
    Value kCoord =
        toI32(arith::MulIOp::create(b, block, em.index(wgmma::kStageK)));
    wgmma::loadTile(b, stageAt(stage, 0), mapA, {kCoord, rowCoord}, barrier);
    for (int64_t m = 0; m < matrices; ++m) {
      SmallVector<Value> coords = {kCoord, colCoord};
      if (expertCoord)
        coords.push_back(expertCoord);
      wgmma::loadTile(b, stageAt(stage, tileA + m * tileB), mapsB[m], coords,
                      barrier);
    }
  };
  em.ifThen(first, [&] {
    for (int64_t s = 0; s < stages; ++s)
      wgmma::initBarrier(b, barrierOf(em.i32(s)));
  });
  gpu::BarrierOp::create(b);
  em.ifThen(first, [&] {
    for (int64_t s = 0; s < std::min(stages, kBlocks); ++s)
      issue(em.index(s), em.i32(s));
  });

  SmallVector<Value> init(matrices, wgmma::zeroAccumulator(b, n));
  SmallVector<Value> result = em.reduce(
      em.index(0), em.index(kBlocks), init,
      [&](Value block, ValueRange acc) -> SmallVector<Value> {
        Value stage =
            toI32(arith::RemUIOp::create(b, block, em.index(stages)));
        Value parity = toI32(arith::AndIOp::create(
            b, arith::DivUIOp::create(b, block, em.index(stages)),
            em.index(1)));
        wgmma::waitParity(b, barrierOf(stage), parity);
        SmallVector<Value> next(acc);
        wgmma::fence(b);
        for (int64_t slice = 0; slice < wgmma::kStageK / wgmma::kStepK;
             ++slice) {
          Value descA = wgmma::descriptor(b, stageAt(stage, 0), slice);
          for (int64_t m = 0; m < matrices; ++m)
            next[m] = wgmma::mma(
                b, descA,
                wgmma::descriptor(b, stageAt(stage, tileA + m * tileB), slice),
                next[m], n);
        }
        wgmma::commit(b);
        // This block's group stays in flight while the next stage's copies
        // land; the previous block's group is done in this warp, and after
        // the barrier in every warp, so its stage can be refilled.
        wgmma::waitGroups(b, 1);
        gpu::BarrierOp::create(b);
        Value refill =
            arith::AddIOp::create(b, block, em.index(stages - 1));
        Value more = arith::AndIOp::create(
            b, first,
            arith::AndIOp::create(
                b,
                arith::CmpIOp::create(b, arith::CmpIPredicate::uge, block,
                                      em.index(1)),
                arith::CmpIOp::create(b, arith::CmpIPredicate::ult, refill,
                                      em.index(kBlocks))));
        em.ifThen(more, [&] {
          issue(refill,
                toI32(arith::RemUIOp::create(b, refill, em.index(stages))));
        });
        return next;
      });
  // The epilogue reads the accumulators.
  wgmma::waitGroups(b, 0);
  return result;
}

/// The warpgroup kernels of `spec` (sm_90a), their arguments (tensor maps
/// first, by value):
///   gather:  x, [slots,] xs
///   gate_up: map(xs), [map(gate),] map(up), [slots, tiles,] h
///   down:    map(h), map(down), x, [slots, tiles,]
///            [routing weights | expert gate,] out
struct WarpgroupKernels {
  gpu::GPUFuncOp gather, gateUp, down;
};

WarpgroupKernels createWarpgroupFFNKernels(OpBuilder &builder,
                                           gpu::GPUModuleOp kernels,
                                           const FFNKernelSpec &spec,
                                           const WarpgroupTiles &tiles,
                                           Type outType, Location loc) {
  int64_t gateUpCols = tiles.gateUpCols, downCols = tiles.downCols;
  MLIRContext *context = builder.getContext();
  Type map = LLVM::LLVMPointerType::get(context);
  size_t planArgs = spec.routed ? 2 : 0;
  size_t matrices = spec.gate ? 2 : 1;
  WarpgroupKernels k;

  // xs[r] = bf16(x[token of r]). Padding rows are not written: no real
  // row reads them (a matmul's rows are independent) and their results are
  // never combined, so a decode step does not write R_max rows of zeros
  // (DeepSeek-V3 at one token: 466 MB).
  SmallVector<Type> gatherArgs = {spec.xType};
  if (spec.routed)
    gatherArgs.push_back(spec.slotsType);
  gatherArgs.push_back(bf16Rows(builder, spec.hidden));
  k.gather = createKernel(
      builder, kernels,
      spec.routed ? "expert_ffn_gather" : "shared_ffn_gather", gatherArgs,
      wgmma::kThreads, loc, [&](LoopEmitter &em, ValueRange args) {
        auto &b = em.builder();
        Value x = args[0], xs = args.back();
        Value row = gpu::BlockIdOp::create(b, gpu::Dimension::x);
        Value used;
        std::function<Value()> token;
        if (spec.routed) {
          Value slot = memref::LoadOp::create(b, args[1], ValueRange{row});
          used = arith::CmpIOp::create(b, arith::CmpIPredicate::sge, slot,
                                       em.i32(0));
          token = [&em, slot, &spec] { return tokenOf(em, slot, spec.k); };
        } else {
          used = arith::CmpIOp::create(b, arith::CmpIPredicate::ult, row,
                                       em.dim(x, 0));
          token = [row] { return row; };
        }
        em.ifThen(used, [&] {
          Value t = token();
          forEachOfBlock(em, wgmma::kThreads, em.index(spec.hidden),
                         [&](Value i) {
                           Value v = em.load(x, {t, i});
                           Type bf16 = b.getBF16Type();
                           if (v.getType() != bf16)
                             v = arith::TruncFOp::create(b, bf16, v);
                           memref::StoreOp::create(b, v, xs,
                                                   ValueRange{row, i});
                         });
        });
      });

  auto markMaps = [&](gpu::GPUFuncOp func, int64_t count) {
    func->setAttr(wgmma::kTensorMapParamsAttr,
                  builder.getI64IntegerAttr(count));
  };
  // The lane's rows in its warp's 16 of the block's 64; their tile's
  // expert is the block's (routed).
  auto warpRows = [&](LoopEmitter &em, Value x, ValueRange plan, Value row0,
                      Value col0) {
    auto &b = em.builder();
    Value warp = arith::DivUIOp::create(
        b, gpu::ThreadIdOp::create(b, gpu::Dimension::x), em.index(kWarpSize));
    Value warpRow0 = arith::AddIOp::create(
        b, row0, arith::MulIOp::create(b, warp, em.index(kRowsPerWarp)));
    return emitWarpRows(em, spec, x, plan, warpRow0, col0);
  };

  SmallVector<Type> gateUpArgs(1 + matrices, map);
  if (spec.routed)
    gateUpArgs.append({spec.slotsType, spec.tilesType});
  gateUpArgs.push_back(spec.hType);
  k.gateUp = createKernel(
      builder, kernels,
      spec.routed ? "expert_ffn_gate_up_wgmma" : "shared_ffn_gate_up_wgmma",
      gateUpArgs, wgmma::kThreads, loc, [&](LoopEmitter &em, ValueRange args) {
        ValueRange plan = args.slice(1 + matrices, planArgs);
        Value row0 = blockFirstRow(em, wgmma::kRows);
        ifRowsUsed(em, spec, spec.routed ? plan[0] : Value(), row0, [&] {
          Value col0 = blockFirstColumn(em, gateUpCols);
          // x is not read: the gathered rows were.
          WarpRows w = warpRows(em, Value(), plan, row0, col0);
          SmallVector<Value> mapsB(args.slice(1, matrices));
          SmallVector<Value> acc = emitWarpgroupMatmul(
              em, kernels, args[0], mapsB, row0, col0, w.expert, gateUpCols,
              spec.hidden, tiles.stages);
          SmallVector<SmallVector<Accumulator>> blocks;
          for (Value a : acc)
            blocks.push_back(wgmma::fragments(em.builder(), a, gateUpCols));
          storeHidden(em, spec, w, blocks, args.back());
        });
      });
  markMaps(k.gateUp, int64_t(1 + matrices));

  SmallVector<Type> downArgs = {map, map, spec.xType};
  if (spec.routed)
    downArgs.append({spec.slotsType, spec.tilesType});
  if (Type scale = scaleType(spec))
    downArgs.push_back(scale);
  downArgs.push_back(outType);
  k.down = createKernel(
      builder, kernels,
      spec.routed ? "expert_ffn_down_wgmma" : "shared_ffn_down_wgmma",
      downArgs, wgmma::kThreads, loc, [&](LoopEmitter &em, ValueRange args) {
        ValueRange plan = args.slice(3, planArgs);
        Value row0 = blockFirstRow(em, wgmma::kRows);
        ifRowsUsed(em, spec, spec.routed ? plan[0] : Value(), row0, [&] {
          Value x = args[2];
          Value col0 = blockFirstColumn(em, downCols);
          WarpRows w = warpRows(em, x, plan, row0, col0);
          SmallVector<Value> acc = emitWarpgroupMatmul(
              em, kernels, args[0], {args[1]}, row0, col0, w.expert, downCols,
              spec.width, tiles.stages);
          Value scale = scaleType(spec) ? args[3 + planArgs] : Value();
          storeOutput(em, spec, w, wgmma::fragments(em.builder(), acc[0],
                                                    downCols),
                      x, scale, args.back());
        });
      });
  markMaps(k.down, 2);
  return k;
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

/// Host side: a tensor map of `buffer` (bf16, row-major) whose boxes are
/// `box` (outermost first), 128-byte swizzled, zeros outside: an
/// nvgpu.tma.create.descriptor (the launch plan records it, the runtime
/// encodes it), passed to the kernel as the pointer its parameter is.
Value tensorMap(LoopEmitter &em, Value buffer, ArrayRef<int64_t> box) {
  auto &b = em.builder();
  MLIRContext *context = b.getContext();
  auto type = cast<MemRefType>(buffer.getType());
  Value unranked = memref::CastOp::create(
      b, UnrankedMemRefType::get(type.getElementType(), Attribute()), buffer);
  SmallVector<Value> boxSizes;
  for (int64_t size : box)
    boxSizes.push_back(em.index(size));
  auto tileType = MemRefType::get(
      box, type.getElementType(), MemRefLayoutAttrInterface(),
      gpu::AddressSpaceAttr::get(context, gpu::AddressSpace::Workgroup));
  auto mapType = nvgpu::TensorMapDescriptorType::get(
      context, tileType, nvgpu::TensorMapSwizzleKind::SWIZZLE_128B,
      nvgpu::TensorMapL2PromoKind::L2PROMO_NONE,
      nvgpu::TensorMapOOBKind::OOB_ZERO,
      nvgpu::TensorMapInterleaveKind::INTERLEAVE_NONE);
  Value map =
      nvgpu::TmaCreateDescriptorOp::create(b, mapType, unranked, boxSizes);
  return UnrealizedConversionCastOp::create(
             b, LLVM::LLVMPointerType::get(context), map)
      .getResult(0);
}

/// The box of a weight matrix's tensor map: `cols` rows of kStageK inputs
/// (of one expert when stacked).
SmallVector<int64_t> weightBox(Value weight, int64_t cols) {
  if (cast<ShapedType>(weight.getType()).getRank() == 3)
    return {1, cols, wgmma::kStageK};
  return {cols, wgmma::kStageK};
}

/// Host side of the warpgroup kernels: the gathered rows, h and the output
/// on the device, three launches over `rows` (a multiple of 64) rows.
Value emitWarpgroupFFNLaunches(LoopEmitter &em, const FFNKernelSpec &spec,
                               const WarpgroupTiles &tiles,
                               const WarpgroupKernels &k, MemRefType outType,
                               Value rows, Value x, ArrayRef<Value> plan,
                               Value scale) {
  int64_t gateUpCols = tiles.gateUpCols, downCols = tiles.downCols;
  auto &b = em.builder();
  Value xs = deviceAlloc(em, bf16Rows(b, spec.hidden), {rows});
  SmallVector<Value> gatherOperands = {x};
  if (spec.routed)
    gatherOperands.push_back(plan[0]);
  gatherOperands.push_back(xs);
  launch(em, k.gather, rows, gatherOperands);

  Value h = deviceAlloc(em, cast<MemRefType>(spec.hType), {rows});
  Value rowBlocks = arith::DivUIOp::create(b, rows, em.index(wgmma::kRows));
  auto colBlocks = [&](int64_t n, int64_t cols) {
    return em.index((n + cols - 1) / cols);
  };
  SmallVector<Value> gateUpOperands = {
      tensorMap(em, xs, {wgmma::kRows, wgmma::kStageK})};
  for (Value weight : {spec.gate, spec.up})
    if (weight)
      gateUpOperands.push_back(tensorMap(em, em.toBuffer(weight),
                                         weightBox(weight, gateUpCols)));
  llvm::append_range(gateUpOperands, plan);
  gateUpOperands.push_back(h);
  launch(em, k.gateUp, rowBlocks, gateUpOperands,
         colBlocks(spec.width, gateUpCols),
         warpgroupSharedBytes(spec.gate ? 2 : 1, gateUpCols, tiles.stages));
  gpu::DeallocOp::create(b, /*asyncToken=*/Type(), ValueRange{}, xs);

  Value out = deviceAlloc(em, outType, {rows});
  SmallVector<Value> downOperands = {
      tensorMap(em, h, {wgmma::kRows, wgmma::kStageK}),
      tensorMap(em, em.toBuffer(spec.down), weightBox(spec.down, downCols)),
      x};
  llvm::append_range(downOperands, plan);
  if (scale)
    downOperands.push_back(scale);
  downOperands.push_back(out);
  launch(em, k.down, rowBlocks, downOperands, colBlocks(spec.hidden, downCols),
         warpgroupSharedBytes(1, downCols, tiles.stages));
  gpu::DeallocOp::create(b, /*asyncToken=*/Type(), ValueRange{}, h);
  return out;
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

/// The FFN's kernels and launches in the chosen form: `rows` rows (a
/// multiple of the blocks' rows), `plan` the slots and tiles (routed).
Value lowerFFN(OpBuilder &builder, gpu::GPUModuleOp kernels, GPUMma mma,
               const WarpgroupTiles &tiles, const FFNKernelSpec &spec,
               MemRefType outType, Value rows, Value x, ArrayRef<Value> plan,
               Value scale, Location loc) {
  LoopEmitter em(builder, loc);
  if (mma == GPUMma::Warpgroup) {
    WarpgroupKernels k =
        createWarpgroupFFNKernels(builder, kernels, spec, tiles, outType, loc);
    return emitWarpgroupFFNLaunches(em, spec, tiles, k, outType, rows, x, plan,
                                    scale);
  }
  auto [gateUp, down] =
      createFFNKernels(builder, kernels, spec, outType, loc);
  return emitFFNLaunches(em, spec, gateUp, down, outType, rows, x, plan,
                         scale);
}

struct ExpertFFNToGPU : KernelPattern<ExpertFFNOp> {
  ExpertFFNToGPU(MLIRContext *context, gpu::GPUModuleOp kernels, GPUMma mma,
                 const WarpgroupTiles &tiles)
      : KernelPattern(context, kernels), mma(mma), tiles(tiles) {}

  LogicalResult matchAndRewrite(ExpertFFNOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(checkExpertFFNForGPU(op, mma)))
      return failure();
    FFNKernelSpec spec = specOf(op, rewriter);
    spec.routed = true;
    spec.slotsType = bufferType(op.getSortedSlots());
    spec.tilesType = bufferType(op.getTileExperts());
    spec.routingType = bufferType(op.getWeights());
    spec.k = op.getWeights().getType().getDimSize(1);
    spec.tileRows = op.getTileRows();
    LoopEmitter em(rewriter, op.getLoc());
    Value slots = em.toBuffer(op.getSortedSlots());
    Value tileExperts = em.toBuffer(op.getTileExperts());
    Value out = lowerFFN(rewriter, kernels, mma, tiles, spec,
                         bufferType(op.getOutput()), em.dim(slots, 0),
                         em.toBuffer(op.getInput()), {slots, tileExperts},
                         em.toBuffer(op.getWeights()), op.getLoc());
    rewriter.replaceOp(op, em.toTensor(out, op.getOutput().getType()));
    return success();
  }

  GPUMma mma;
  WarpgroupTiles tiles;
};

struct SharedExpertToGPU : KernelPattern<SharedExpertOp> {
  SharedExpertToGPU(MLIRContext *context, gpu::GPUModuleOp kernels,
                    GPUMma mma, const WarpgroupTiles &tiles)
      : KernelPattern(context, kernels), mma(mma), tiles(tiles) {}

  LogicalResult matchAndRewrite(SharedExpertOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(checkSharedExpertForGPU(op, mma)))
      return failure();
    FFNKernelSpec spec = specOf(op, rewriter);
    if (op.getExpertGate())
      spec.expertGateType = bufferType(op.getExpertGate());
    // One row per token, padded to whole blocks of rows; the rows past the
    // last token are computed and never read.
    int64_t blockRows =
        mma == GPUMma::Warpgroup ? wgmma::kRows : kRowsPerWarp;
    LoopEmitter em(rewriter, op.getLoc());
    auto &b = em.builder();
    Value x = em.toBuffer(op.getInput());
    Value rows = arith::MulIOp::create(
        b, arith::CeilDivUIOp::create(b, em.dim(x, 0), em.index(blockRows)),
        em.index(blockRows));
    Value gate = op.getExpertGate() ? em.toBuffer(op.getExpertGate()) : Value();
    Value out = lowerFFN(rewriter, kernels, mma, tiles, spec,
                         bufferType(op.getOutput()), rows, x, {}, gate,
                         op.getLoc());
    rewriter.replaceOp(op, em.toTensor(out, op.getOutput().getType()));
    return success();
  }

  GPUMma mma;
  WarpgroupTiles tiles;
};
} // namespace

LogicalResult mlir::moe::checkFFNForGPU(Operation *op, GPUMma mma,
                                        int64_t hidden, int64_t width,
                                        int64_t tileRows, int64_t weightPanel,
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
    if (mma == GPUMma::Warpgroup && !element.isBF16())
      return op->emitOpError("warpgroup mma reads bf16 expert weights (TMA "
                             "copies them as they are), got ")
             << element;
  }
  if (mma == GPUMma::Warpgroup && tileRows % wgmma::kRows != 0)
    return op->emitOpError("warpgroup mma needs tile_rows to be a multiple "
                           "of 64 (one block's rows, one expert), got ")
           << tileRows;
  return success();
}

LogicalResult mlir::moe::checkExpertFFNForGPU(ExpertFFNOp op, GPUMma mma) {
  return checkFFNForGPU(op, mma, op.getInput().getType().getDimSize(1),
                        op.getWidth(), op.getTileRows(), op.getWeightPanel(),
                        {op.getGate(), op.getUp(), op.getDown()});
}

LogicalResult mlir::moe::checkSharedExpertForGPU(SharedExpertOp op,
                                                 GPUMma mma) {
  // Its rows are the tokens, padded to whole blocks.
  return checkFFNForGPU(
      op, mma, op.getInput().getType().getDimSize(1), op.getWidth(),
      mma == GPUMma::Warpgroup ? wgmma::kRows : kRowsPerWarp,
      op.getWeightPanel(), {op.getGate(), op.getUp(), op.getDown()});
}

std::string mlir::moe::checkWarpgroupTiles(const WarpgroupTiles &tiles) {
  // wgmma's N: a multiple of 8 up to 256; gate/up keeps two accumulators of
  // N / 2 registers each, so at most 128 columns there.
  auto badCols = [](int64_t cols, int64_t most) {
    return cols < 8 || cols > most || cols % 8 != 0;
  };
  if (badCols(tiles.gateUpCols, 128))
    return "wgmma-gate-up-cols must be a multiple of 8 from 8 to 128, not " +
           std::to_string(tiles.gateUpCols);
  if (badCols(tiles.downCols, 256))
    return "wgmma-down-cols must be a multiple of 8 from 8 to 256, not " +
           std::to_string(tiles.downCols);
  if (tiles.stages < 2 || tiles.stages > 8)
    return "wgmma-stages must be from 2 to 8, not " +
           std::to_string(tiles.stages);
  int64_t most =
      std::max(warpgroupSharedBytes(2, tiles.gateUpCols, tiles.stages),
               warpgroupSharedBytes(1, tiles.downCols, tiles.stages));
  if (most > kMaxSharedBytes)
    return std::to_string(tiles.stages) + " stages of these tiles need " +
           std::to_string(most) + " bytes of shared memory per block; an " +
           "sm_90 block has at most " + std::to_string(kMaxSharedBytes);
  return "";
}

void mlir::moe::populateExpertFFNToGPUPatterns(RewritePatternSet &patterns,
                                               gpu::GPUModuleOp kernels,
                                               GPUMma mma,
                                               const WarpgroupTiles &tiles) {
  patterns.add<ExpertFFNToGPU, SharedExpertToGPU>(patterns.getContext(),
                                                  kernels, mma, tiles);
}
