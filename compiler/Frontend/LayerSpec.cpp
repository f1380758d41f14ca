//===- LayerSpec.cpp - LayerSpec to a moe.layer module --------------------===//

#include "compiler/Frontend/LayerSpec.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

using namespace mlir;
using namespace mlir::moe;

OwningOpRef<ModuleOp> mlir::moe::buildLayerModule(MLIRContext *context,
                                                  const LayerSpec &spec,
                                                  Location loc) {
  context->loadDialect<MoEDialect, func::FuncDialect>();
  OpBuilder b(context);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  (*module)->setAttr("moe.family", b.getStringAttr(spec.family));

  Type f32 = b.getF32Type();
  Type ffn = spec.ffnWeights == LayerSpec::WeightType::bf16 ? b.getBF16Type()
                                                            : f32;
  int64_t dyn = ShapedType::kDynamic;
  SmallVector<Type> argTypes;
  SmallVector<std::string> argNames;
  auto addArg = [&](ArrayRef<int64_t> shape, StringRef name,
                    Type element = nullptr) {
    argTypes.push_back(RankedTensorType::get(shape, element ? element : f32));
    argNames.push_back(name.str());
    return argTypes.size() - 1;
  };
  int64_t E = spec.experts, H = spec.hidden, I = spec.width;
  int64_t S = spec.sharedWidth;
  addArg({dyn, H}, "");
  size_t router = addArg({E, H}, spec.routerName);
  std::optional<size_t> bias, gate, sharedGate, sharedUp, sharedDown,
      sharedExpertGate;
  if (!spec.biasName.empty())
    bias = addArg({E}, spec.biasName);
  if (!spec.expertGateName.empty())
    gate = addArg({E, I, H}, spec.expertGateName, ffn);
  size_t up = addArg({E, I, H}, spec.expertUpName, ffn);
  size_t down = addArg({E, H, I}, spec.expertDownName, ffn);
  if (S > 0) {
    if (!spec.sharedGateName.empty())
      sharedGate = addArg({S, H}, spec.sharedGateName, ffn);
    sharedUp = addArg({S, H}, spec.sharedUpName, ffn);
    sharedDown = addArg({H, S}, spec.sharedDownName, ffn);
    if (!spec.sharedExpertGateName.empty())
      sharedExpertGate = addArg({1, H}, spec.sharedExpertGateName);
  }

  auto outputType = RankedTensorType::get({dyn, H}, f32);
  auto countsType = RankedTensorType::get({E}, b.getI64Type());
  b.setInsertionPointToEnd(module->getBody());
  auto func = func::FuncOp::create(
      b, loc, "moe_forward",
      b.getFunctionType(argTypes, {outputType, countsType}));
  for (auto [i, name] : llvm::enumerate(argNames)) {
    if (name.empty())
      continue;
    func.setArgAttr(i, "moe.weight", b.getStringAttr(name));
  }

  Block *body = func.addEntryBlock();
  b.setInsertionPointToStart(body);
  auto arg = [&](std::optional<size_t> i) -> Value {
    return i ? body->getArgument(*i) : Value();
  };
  auto layer = LayerOp::create(
      b, loc, outputType, countsType, body->getArgument(0),
      body->getArgument(router), arg(bias), arg(gate), body->getArgument(up),
      body->getArgument(down), arg(sharedGate), arg(sharedUp), arg(sharedDown),
      arg(sharedExpertGate), spec.scoring, spec.k, spec.groups,
      spec.topkGroups, spec.groupScore, spec.renormalize,
      llvm::APFloat(spec.scalingFactor), spec.capacity, spec.activation,
      spec.tileRows,
      spec.ffnActivations == LayerSpec::WeightType::bf16
          ? TypeAttr::get(b.getBF16Type())
          : TypeAttr(),
      /*schedule=*/nullptr);
  func::ReturnOp::create(b, loc, layer.getResults());
  return module;
}
