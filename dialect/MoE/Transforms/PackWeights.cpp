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
/// `[.., out, in]` → `[.., ceil(out / panel), in, panel]`.
RankedTensorType packedType(RankedTensorType type, int64_t panel) {
  SmallVector<int64_t> shape(type.getShape().drop_back(2));
  int64_t out = type.getShape()[type.getRank() - 2];
  shape.append({llvm::divideCeilSigned(out, panel), type.getShape().back(), panel});
  return RankedTensorType::get(shape, type.getElementType());
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
    Builder b(func.getContext());
    for (BlockArgument arg : args) {
      auto type = cast<RankedTensorType>(arg.getType());
      unsigned i = arg.getArgNumber();
      func.setArgAttr(i, "moe.logical_shape",
                      b.getDenseI64ArrayAttr(type.getShape()));
      func.setArgAttr(i, "moe.panel", b.getI64IntegerAttr(width));
      arg.setType(packedType(type, width));
    }
    op.setWeightPanel(width);
  }
};
} // namespace
