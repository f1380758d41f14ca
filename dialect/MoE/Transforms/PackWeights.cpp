//===- PackWeights.cpp - FFN weights into panels ---------------------------===//

#include "dialect/MoE/IR/MoEOps.h"
#include "dialect/MoE/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPACKWEIGHTSPASS
#include "dialect/MoE/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
/// `[.., out, in]` → `[.., ceil(out / panel), in / kPack, panel * kPack]`.
RankedTensorType packedType(RankedTensorType type, int64_t panel,
                            int64_t kPack) {
  SmallVector<int64_t> shape(type.getShape().drop_back(2));
  int64_t out = type.getShape()[type.getRank() - 2];
  shape.append({llvm::divideCeilSigned(out, panel),
                type.getShape().back() / kPack, panel * kPack});
  return RankedTensorType::get(shape, type.getElementType());
}

/// Pairs of inputs per lane for bf16 weights whose inputs all come in
/// pairs (`weight_k_pack`): a pair is one 32-bit lane, which bf16 dot
/// products read as such and the widening to f32 splits with one shift or
/// mask per two multiply-adds.
int64_t kPackFor(ArrayRef<BlockArgument> weights, int64_t requested) {
  if (requested != 2)
    return 1;
  for (BlockArgument w : weights) {
    auto type = cast<RankedTensorType>(w.getType());
    int64_t rank = type.getRank();
    if (!type.getElementType().isBF16() || type.getDimSize(rank - 1) % 2 ||
        type.getDimSize(rank - 2) % 2)
      return 1;
  }
  return 2;
}

struct MoEPackWeightsPass
    : moe::impl::MoEPackWeightsPassBase<MoEPackWeightsPass> {
  using Base::Base;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (panel <= 0) {
      func.emitError("moe-pack-weights: panel must be positive");
      return signalPassFailure();
    }
    if (kPack != 1 && kPack != 2) {
      func.emitError("moe-pack-weights: k-pack must be 1 or 2");
      return signalPassFailure();
    }
    if (func.isExternal())
      return;
    func.walk([&](Operation *op) {
      if (auto ffn = dyn_cast<ExpertFFNOp>(op))
        pack(ffn, {ffn.getGate(), ffn.getUp(), ffn.getDown()});
      else if (auto shared = dyn_cast<SharedExpertOp>(op))
        pack(shared, {shared.getGate(), shared.getUp(), shared.getDown()});
    });
    SmallVector<Type> inputs(func.getBody().getArgumentTypes());
    func.setFunctionType(FunctionType::get(
        func.getContext(), inputs, func.getFunctionType().getResults()));
  }

  /// Packs `op`'s weights when every one of them is a function argument
  /// used only as such a weight; otherwise leaves the op as it is.
  template <typename OpTy>
  void pack(OpTy op, ArrayRef<Value> weights) {
    if (op.getWeightPanel() != 0)
      return;
    func::FuncOp func = getOperation();
    SmallVector<BlockArgument> args;
    for (Value w : weights) {
      if (!w)
        continue;
      auto arg = dyn_cast<BlockArgument>(w);
      if (!arg || arg.getOwner() != &func.getBody().front() ||
          !llvm::all_of(arg.getUsers(),
                        [&](Operation *user) { return user == op; }))
        return;
      args.push_back(arg);
    }
    // The op's schedule decides the vector width, hence the panel width.
    int64_t width = panel;
    if (CPUScheduleAttr schedule = op.getScheduleAttr())
      width = schedule.getVectorWidth();
    int64_t pack = kPackFor(args, kPack);
    Builder b(func.getContext());
    for (BlockArgument arg : args) {
      auto type = cast<RankedTensorType>(arg.getType());
      unsigned i = arg.getArgNumber();
      func.setArgAttr(i, "moe.logical_shape",
                      b.getDenseI64ArrayAttr(type.getShape()));
      func.setArgAttr(i, "moe.panel", b.getI64IntegerAttr(width));
      if (pack > 1)
        func.setArgAttr(i, "moe.k_pack", b.getI64IntegerAttr(pack));
      arg.setType(packedType(type, width, pack));
    }
    op.setWeightPanel(width);
    op.setWeightKPack(pack);
  }
};
} // namespace
