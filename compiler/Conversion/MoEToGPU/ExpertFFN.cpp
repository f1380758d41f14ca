//===- ExpertFFN.cpp - moe.expert_ffn to tensor-core kernels --------------===//
//
// The grouped expert FFN becomes two kernels over the dispatch plan, each a
// grid of warps with one 16-row block (inside one tile, hence one expert)
// and 8 * kTilesPerWarp output columns per warp:
//   gate_up: h[r] = act(x_t W_gate,e^T) * (x_t W_up,e^T), t the row's token,
//            h kept in bf16 (the next matmul's A operand);
//   down:    out[r] = w_r * (h[r] W_down,e^T), w_r the row's routing weight,
//            zero for padding rows.
// Every product runs on bf16 tensor cores with f32 accumulation; f32
// weights and activations are rounded to bf16 as they are loaded. Each
// output element's K loop runs in one fixed order, so results do not depend
// on the launch.
//
//===----------------------------------------------------------------------===//

#include "compiler/Conversion/MoEToGPU/MmaFragments.h"
#include "compiler/Conversion/MoEToGPU/PopulatePatterns.h"
#include "compiler/Conversion/MoEToLoops/LoopEmitter.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/SymbolTable.h"

using namespace mlir;
using namespace mlir::moe;
using gpu_mma::Accumulator;

namespace {
/// Output blocks of 8 columns per warp: 4 keeps the gate/up accumulators
/// (2 x 4 x 4 f32) in registers with room for the fragments.
constexpr int64_t kTilesPerWarp = 4;
constexpr int64_t kRowsPerWarp = 16;
constexpr int64_t kWarpSize = 32;

/// What a warp knows about its 16 rows.
struct WarpRows {
  gpu_mma::Lane lane;
  Value rowLo, rowHi;   // the plan rows of the lane's C fragment (g, g + 8)
  Value slotLo, slotHi; // their slots (i32, -1 for padding)
  Value expert;         // the tile's expert (index)
  Value colBase;        // the first output column of the warp
};

WarpRows emitWarpRows(LoopEmitter &em, Value slots, Value tileExperts,
                      int64_t tileRows) {
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
  w.slotLo = memref::LoadOp::create(b, slots, ValueRange{w.rowLo});
  w.slotHi = memref::LoadOp::create(b, slots, ValueRange{w.rowHi});
  Value tile = arith::DivUIOp::create(b, row0, em.index(tileRows));
  w.expert = em.toIndex(memref::LoadOp::create(b, tileExperts, ValueRange{tile}));
  return w;
}

/// The token of a slot (padding rows read token 0; their results are
/// never used).
Value tokenOf(LoopEmitter &em, Value slot, int64_t k) {
  auto &b = em.builder();
  Value clamped = arith::MaxSIOp::create(b, slot, em.i32(0));
  return arith::DivUIOp::create(b, em.toIndex(clamped), em.index(k));
}

/// The warp's 16 x (8 * kTilesPerWarp) block of A B_m^T for each weight
/// matrix m ([experts, N, K]), over K in steps of 16: [m][tile] accumulators.
/// A's rows are `aRowLo`/`aRowHi` of `a` ([?, K]). Columns past N read the
/// last weight row (their results are not stored), so every lane of the
/// warp issues every mma.
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
        b, w.colBase,
        arith::AddIOp::create(b, em.index(8 * j), w.lane.g));
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
                gpu_mma::loadPair(b, weight, {w.expert, columns[j], k0}),
                gpu_mma::loadPair(b, weight, {w.expert, columns[j], k1})};
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
                          llvm::Align(2 * element.getIntOrFloatBitWidth() / 8));
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

/// A kernel `name(args...)` in `kernels`, launched with one warp per block;
/// `fill` emits its body.
gpu::GPUFuncOp createKernel(OpBuilder &builder, gpu::GPUModuleOp kernels,
                            StringRef name, TypeRange args, Location loc,
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
      builder.getDenseI32ArrayAttr({int32_t(kWarpSize), 1, 1}));
  SymbolTable(kernels).insert(func);
  Block &entry = func.getBody().front();
  builder.setInsertionPointToEnd(&entry);
  auto ret = gpu::ReturnOp::create(builder, loc);
  builder.setInsertionPoint(ret);
  LoopEmitter em(builder, loc);
  fill(em, entry.getArguments());
  return func;
}

MemRefType bufferType(Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  return MemRefType::get(type.getShape(), type.getElementType());
}

struct ExpertFFNToGPU : OpRewritePattern<ExpertFFNOp> {
  ExpertFFNToGPU(MLIRContext *context, gpu::GPUModuleOp kernels)
      : OpRewritePattern(context), kernels(kernels) {}
  gpu::GPUModuleOp kernels;

  LogicalResult matchAndRewrite(ExpertFFNOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(checkExpertFFNForGPU(op)))
      return failure();
    Location loc = op.getLoc();
    int64_t hidden = op.getInput().getType().getDimSize(1);
    int64_t width = op.getWidth();
    int64_t k = op.getWeights().getType().getDimSize(1);
    int64_t tileRows = op.getTileRows();
    Activation activation = op.getActivation();
    bool gated = bool(op.getGate());
    auto hType = MemRefType::get({ShapedType::kDynamic, width},
                                 rewriter.getBF16Type());
    auto outType = bufferType(op.getOutput());

    // gate_up(x, slots, tile_experts, [gate,] up, h)
    SmallVector<Value> ffnWeights;
    if (gated)
      ffnWeights.push_back(op.getGate());
    ffnWeights.push_back(op.getUp());
    SmallVector<Type> gateUpArgs = {bufferType(op.getInput()),
                                    bufferType(op.getSortedSlots()),
                                    bufferType(op.getTileExperts())};
    for (Value weight : ffnWeights)
      gateUpArgs.push_back(bufferType(weight));
    gateUpArgs.push_back(hType);
    gpu::GPUFuncOp gateUp = createKernel(
        rewriter, kernels, "expert_ffn_gate_up", gateUpArgs, loc,
        [&](LoopEmitter &em, ValueRange args) {
          WarpRows w = emitWarpRows(em, args[1], args[2], tileRows);
          Value tokLo = tokenOf(em, w.slotLo, k), tokHi = tokenOf(em, w.slotHi, k);
          auto matrices = args.slice(3, ffnWeights.size());
          Value h = args.back();
          auto blocks = emitWarpMatmul(em, w, args[0], tokLo, tokHi,
                                       SmallVector<Value>(matrices), width,
                                       hidden);
          forEachStoredTile(em, w, width, [&](int64_t j, Value col) {
            auto value = [&](int64_t i) {
              Value v = em.activation(activation, blocks[0][j][i]);
              return gated ? em.mul(v, blocks[1][j][i]) : v;
            };
            storePair(em, value(0), value(1), h, w.rowLo, col);
            storePair(em, value(2), value(3), h, w.rowHi, col);
          });
        });

    // down(h, slots, tile_experts, down, weights, out)
    gpu::GPUFuncOp down = createKernel(
        rewriter, kernels, "expert_ffn_down",
        {hType, bufferType(op.getSortedSlots()),
         bufferType(op.getTileExperts()), bufferType(op.getDown()),
         bufferType(op.getWeights()), outType},
        loc, [&](LoopEmitter &em, ValueRange args) {
          auto &b = em.builder();
          WarpRows w = emitWarpRows(em, args[1], args[2], tileRows);
          // The routing weight of a row's slot; 0 for padding rows.
          auto scaleOf = [&](Value slot) {
            Value token = tokenOf(em, slot, k);
            Value clamped = em.toIndex(arith::MaxSIOp::create(b, slot, em.i32(0)));
            Value choice = arith::RemUIOp::create(b, clamped, em.index(k));
            Value weight = em.load(args[4], {token, choice});
            Value valid = arith::CmpIOp::create(b, arith::CmpIPredicate::sge,
                                                slot, em.i32(0));
            return arith::SelectOp::create(b, valid, weight, em.f32(0.0));
          };
          Value scaleLo = scaleOf(w.slotLo), scaleHi = scaleOf(w.slotHi);
          auto blocks = emitWarpMatmul(em, w, args[0], w.rowLo, w.rowHi,
                                       {args[3]}, hidden, width);
          forEachStoredTile(em, w, hidden, [&](int64_t j, Value col) {
            const Accumulator &c = blocks[0][j];
            storePair(em, em.mul(c[0], scaleLo), em.mul(c[1], scaleLo),
                      args[5], w.rowLo, col);
            storePair(em, em.mul(c[2], scaleHi), em.mul(c[3], scaleHi),
                      args[5], w.rowHi, col);
          });
        });

    // Host side: device buffers for h and the output, two launches.
    LoopEmitter em(rewriter, loc);
    auto &b = em.builder();
    Value x = em.toBuffer(op.getInput());
    Value slots = em.toBuffer(op.getSortedSlots());
    Value tiles = em.toBuffer(op.getTileExperts());
    SmallVector<Value> weightBuffers;
    for (Value weight : ffnWeights)
      weightBuffers.push_back(em.toBuffer(weight));
    Value downBuffer = em.toBuffer(op.getDown());
    Value routing = em.toBuffer(op.getWeights());
    Value rows = em.dim(slots, 0);
    auto alloc = [&](MemRefType type) {
      return gpu::AllocOp::create(b, type, /*asyncToken=*/Type(),
                                  /*asyncDependencies=*/ValueRange{},
                                  ValueRange{rows}, /*symbolOperands=*/ValueRange{})
          .getMemref();
    };
    Value h = alloc(hType);
    Value out = alloc(outType);
    Value one = em.index(1);
    Value rowBlocks = arith::DivUIOp::create(b, rows, em.index(kRowsPerWarp));
    auto colBlocks = [&](int64_t n) {
      int64_t perWarp = 8 * kTilesPerWarp;
      return em.index((n + perWarp - 1) / perWarp);
    };
    gpu::KernelDim3 block = {em.index(kWarpSize), one, one};
    SmallVector<Value> gateUpOperands = {x, slots, tiles};
    llvm::append_range(gateUpOperands, weightBuffers);
    gateUpOperands.push_back(h);
    gpu::LaunchFuncOp::create(b, gateUp, {rowBlocks, colBlocks(width), one},
                              block, /*dynamicSharedMemorySize=*/Value(),
                              gateUpOperands);
    gpu::LaunchFuncOp::create(b, down, {rowBlocks, colBlocks(hidden), one},
                              block, Value(),
                              ValueRange{h, slots, tiles, downBuffer, routing,
                                         out});
    gpu::DeallocOp::create(b, /*asyncToken=*/Type(), ValueRange{}, h);
    rewriter.replaceOp(op, em.toTensor(out, op.getOutput().getType()));
    return success();
  }
};
} // namespace

LogicalResult mlir::moe::checkExpertFFNForGPU(ExpertFFNOp op) {
  int64_t hidden = op.getInput().getType().getDimSize(1);
  int64_t width = op.getWidth();
  if (op.getWeightPanel() != 0)
    return op.emitOpError("the cuda target reads unpacked weights, not "
                          "weight_panel = ")
           << op.getWeightPanel();
  if (hidden % 16 != 0)
    return op.emitOpError("the cuda target needs the hidden size to be a "
                          "multiple of 16 (bf16 mma k-step), got ")
           << hidden;
  if (width % 16 != 0)
    return op.emitOpError("the cuda target needs the expert width to be a "
                          "multiple of 16 (bf16 mma k-step), got ")
           << width;
  if (op.getTileRows() % kRowsPerWarp != 0)
    return op.emitOpError("the cuda target needs tile_rows to be a multiple "
                          "of 16 (one warp's rows), got ")
           << op.getTileRows();
  for (Value weight : {op.getGate(), op.getUp(), op.getDown()}) {
    if (!weight)
      continue;
    Type element = cast<ShapedType>(weight.getType()).getElementType();
    if (!element.isF32() && !element.isBF16())
      return op.emitOpError("the cuda target reads f32 or bf16 expert "
                            "weights, got ")
             << element;
  }
  return success();
}

void mlir::moe::populateExpertFFNToGPUPatterns(RewritePatternSet &patterns,
                                               gpu::GPUModuleOp kernels) {
  patterns.add<ExpertFFNToGPU>(patterns.getContext(), kernels);
}
