//===- LayerABI.cpp - The compiled layer's interface to libmoert ----------===//

#include "compiler/Target/LayerABI.h"

#include "dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

using namespace mlir;
using namespace mlir::moe;
namespace json = llvm::json;

static llvm::Error error(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(), message);
}

llvm::Expected<func::FuncOp> mlir::moe::prepareEntryFunction(ModuleOp module) {
  func::FuncOp entry;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (func.isExternal() || func.getOps<LayerOp>().empty())
      continue;
    if (entry)
      return error("more than one function holds a moe.layer (@" +
                   entry.getSymName() + ", @" + func.getSymName() + ")");
    entry = func;
  }
  if (!entry)
    return error("no function holds a moe.layer");
  if (!llvm::hasSingleElement(entry.getOps<LayerOp>()))
    return error("@" + entry.getSymName() + " holds more than one moe.layer");

  FunctionType type = entry.getFunctionType();
  if (type.getNumInputs() == 0)
    return error("@" + entry.getSymName() + " takes no arguments");
  auto tokensType = dyn_cast<RankedTensorType>(type.getInput(0));
  if (!tokensType || tokensType.getRank() != 2 ||
      !tokensType.getElementType().isF32())
    return error("@" + entry.getSymName() +
                 ": argument #0 (the tokens) must be a 2-D f32 tensor");
  for (unsigned i = 1; i < type.getNumInputs(); ++i) {
    auto tensor = dyn_cast<RankedTensorType>(type.getInput(i));
    if (!tensor || !tensor.hasStaticShape() ||
        !isa<Float32Type, BFloat16Type, Float16Type>(tensor.getElementType()))
      return error(llvm::formatv("@{0}: argument #{1} must be a static f32, "
                                 "bf16 or f16 tensor (a weight)",
                                 entry.getSymName(), i));
    if (!entry.getArgAttrOfType<StringAttr>(i, "moe.weight"))
      return error(llvm::formatv("@{0}: argument #{1} has no 'moe.weight' "
                                 "attribute naming its checkpoint tensor",
                                 entry.getSymName(), i));
  }
  if (type.getNumResults() != 2)
    return error("@" + entry.getSymName() +
                 " must return the layer's output and tokens_per_expert");
  if (entry.getSymName() != kEntryName) {
    if (SymbolTable::lookupSymbolIn(module, kEntryName))
      return error("@moe_forward exists but holds no moe.layer");
    entry.setSymName(kEntryName);
  }
  entry->setAttr("llvm.emit_c_interface", UnitAttr::get(module.getContext()));
  return entry;
}

namespace {
/// What the metadata needs of the layer, before or after decomposition.
struct LayerSummary {
  int64_t hidden = 0, experts = 0, k = 0, tileRows = 0, capacity = 0;
  int64_t width = 0; // the widest expert (routed or shared)
};

LayerSummary summarize(func::FuncOp entry) {
  LayerSummary s;
  entry.walk([&](Operation *op) {
    if (auto layer = dyn_cast<LayerOp>(op)) {
      auto width = [](Value w) {
        return w ? cast<ShapedType>(w.getType()).getDimSize(
                       cast<ShapedType>(w.getType()).getRank() - 2)
                 : 0;
      };
      s = {layer.getHiddenSize(),
           layer.getNumExperts(),
           static_cast<int64_t>(layer.getK()),
           static_cast<int64_t>(layer.getTileRows()),
           static_cast<int64_t>(layer.getCapacity()),
           std::max(width(layer.getExpertUp()), width(layer.getSharedUp()))};
    } else if (auto topk = dyn_cast<TopKOp>(op)) {
      s.experts = topk.getScores().getType().getDimSize(1);
      s.k = topk.getK();
      s.capacity = topk.getCapacity();
    } else if (auto ffn = dyn_cast<ExpertFFNOp>(op)) {
      s.hidden = ffn.getInput().getType().getDimSize(1);
      s.tileRows = ffn.getTileRows();
      s.width = std::max(s.width, ffn.getWidth());
    } else if (auto shared = dyn_cast<SharedExpertOp>(op)) {
      s.width = std::max(s.width, shared.getWidth());
    }
  });
  return s;
}
} // namespace

static StringRef dtypeName(Type element) {
  if (element.isBF16())
    return "bf16";
  if (element.isF16())
    return "f16";
  return "f32";
}

/// The layer's routing attributes, for tools that reimplement it (moe-bench's
/// baselines) and for users inspecting a compiled layer; read from
/// moe.layer or, once decomposed, from the primitives.
static json::Object routingOf(func::FuncOp entry) {
  json::Object routing;
  auto selection = [&](auto op) {
    routing["k"] = static_cast<int64_t>(op.getK());
    routing["groups"] = static_cast<int64_t>(op.getGroups());
    routing["topk_groups"] = static_cast<int64_t>(op.getTopkGroups());
    routing["group_score"] = stringifyGroupScore(op.getGroupScore());
    routing["selection_bias"] = static_cast<bool>(op.getSelectionBias());
    routing["renormalize"] = op.getRenormalize();
    routing["scaling_factor"] = op.getScalingFactor().convertToDouble();
    routing["capacity"] = static_cast<int64_t>(op.getCapacity());
  };
  entry.walk([&](Operation *op) {
    if (auto layer = dyn_cast<LayerOp>(op)) {
      selection(layer);
      routing["scoring"] = stringifyScoringFunc(layer.getScoring());
      routing["activation"] = stringifyActivation(layer.getActivation());
      routing["gated"] = static_cast<bool>(layer.getExpertGate());
      routing["shared_gated"] = static_cast<bool>(layer.getSharedGate());
      routing["shared_sigmoid_gate"] =
          static_cast<bool>(layer.getSharedExpertGate());
    } else if (auto topk = dyn_cast<TopKOp>(op)) {
      selection(topk);
    } else if (auto router = dyn_cast<RouterOp>(op)) {
      routing["scoring"] = stringifyScoringFunc(router.getScoring());
    } else if (auto ffn = dyn_cast<ExpertFFNOp>(op)) {
      routing["activation"] = stringifyActivation(ffn.getActivation());
      routing["gated"] = static_cast<bool>(ffn.getGate());
    } else if (auto shared = dyn_cast<SharedExpertOp>(op)) {
      routing["shared_gated"] = static_cast<bool>(shared.getGate());
      routing["shared_sigmoid_gate"] =
          static_cast<bool>(shared.getExpertGate());
    }
  });
  return routing;
}

/// "bf16" when the expert matmuls multiply bf16-rounded activations
/// (`activation_type = bf16` on moe.layer or the FFN primitives).
static StringRef activationDtypeOf(func::FuncOp entry) {
  bool bf16 = false;
  entry.walk([&](Operation *op) {
    if (auto type = op->getAttrOfType<TypeAttr>("activation_type"))
      bf16 |= type.getValue().isBF16();
  });
  return bf16 ? "bf16" : "f32";
}

static json::Array shapeOf(ShapedType type) {
  json::Array shape;
  for (int64_t d : type.getShape())
    shape.push_back(ShapedType::isDynamic(d) ? -1 : d);
  return shape;
}

std::string mlir::moe::buildLayerMetadata(ModuleOp module,
                                          func::FuncOp entry) {
  LayerSummary layer = summarize(entry);
  int64_t hidden = layer.hidden, experts = layer.experts;
  int64_t k = layer.k, tile = layer.tileRows;

  json::Array arguments;
  FunctionType type = entry.getFunctionType();
  arguments.push_back(json::Object{{"name", "x"},
                                   {"role", "input"},
                                   {"dtype", "f32"},
                                   {"shape", json::Array{-1, hidden}}});
  for (unsigned i = 1; i < type.getNumInputs(); ++i) {
    StringRef name =
        entry.getArgAttrOfType<StringAttr>(i, "moe.weight").getValue();
    auto tensor = cast<ShapedType>(type.getInput(i));
    json::Object arg{{"name", name},
                     {"role", "weight"},
                     {"dtype", dtypeName(tensor.getElementType())},
                     {"shape", shapeOf(tensor)}};
    if (name.contains("{e}"))
      arg["stacked"] = true;
    if (auto panel = entry.getArgAttrOfType<IntegerAttr>(i, "moe.panel")) {
      auto logical =
          entry.getArgAttrOfType<DenseI64ArrayAttr>(i, "moe.logical_shape");
      arg["shape"] = json::Array(logical.asArrayRef());
      arg["layout"] = "panels";
      arg["panel"] = panel.getInt();
      if (auto pack = entry.getArgAttrOfType<IntegerAttr>(i, "moe.k_pack"))
        arg["k_pack"] = pack.getInt();
      arg["packed_shape"] = shapeOf(tensor);
    }
    arguments.push_back(std::move(arg));
  }
  arguments.push_back(json::Object{{"name", "output"},
                                   {"role", "output"},
                                   {"dtype", "f32"},
                                   {"shape", json::Array{-1, hidden}}});
  arguments.push_back(json::Object{{"name", "tokens_per_expert"},
                                   {"role", "stats"},
                                   {"dtype", "i64"},
                                   {"shape", json::Array{experts}}});

  // An upper bound on the lowering's heap buffers (see MoEToLoops): per
  // token the logits and scores, routing weights and indices, the plan's
  // slot rows, k expert rows, the shared expert's and the combined output;
  // per expert, one partly padded tile of rows.
  int64_t perToken = 4 * (2 * experts + 4 * k + k * hidden + 3 * hidden);
  int64_t fixed = experts * tile * (4 * hidden + 8) + 64 * 1024;
  // Each thread running a tile holds its rows' tokens, scales and hidden
  // activations (routed and shared experts may not overlap, so twice), and
  // with bf16 activations its rows of x rounded to bf16.
  int64_t staged = activationDtypeOf(entry) == "bf16" ? 4 * (hidden + 64) : 0;
  int64_t perThread = 2 * tile * (4 * (layer.width + 64) + staged + 16);

  StringRef family = "custom";
  if (auto attr = module->getAttrOfType<StringAttr>("moe.family"))
    family = attr.getValue();
  json::Object metadata{
      {"abi_version", kLayerABIVersion},
      {"moec_version", MOEC_VERSION},
      {"family", family},
      {"hidden_size", hidden},
      {"num_experts", experts},
      {"top_k", k},
      {"capacity", layer.capacity},
      {"token_independent", layer.capacity == 0},
      {"workspace_bytes_per_token", perToken},
      {"routing", routingOf(entry)},
      {"activation_dtype", activationDtypeOf(entry)},
      {"workspace_bytes_fixed", fixed},
      {"workspace_bytes_per_thread", perThread},
      {"threading", "openmp"},
      {"arguments", std::move(arguments)},
  };
  return llvm::formatv("{0}", json::Value(std::move(metadata))).str();
}

void mlir::moe::eraseWeightNames(func::FuncOp entry) {
  for (unsigned i = 0; i < entry.getNumArguments(); ++i)
    for (StringRef name :
         {"moe.weight", "moe.panel", "moe.k_pack", "moe.logical_shape"})
      entry.removeArgAttr(i, name);
}

llvm::Function *mlir::moe::defineLayerFunction(
    llvm::Module &module, llvm::StringRef name, llvm::Type *result,
    llvm::ArrayRef<llvm::Type *> params, llvm::IRBuilderBase &b) {
  auto *fn = llvm::Function::Create(
      llvm::FunctionType::get(result, params, false),
      llvm::GlobalValue::ExternalLinkage, name, module);
  b.SetInsertPoint(llvm::BasicBlock::Create(module.getContext(), "entry", fn));
  return fn;
}

void mlir::moe::addLayerIdentity(llvm::Module &module,
                                 llvm::StringRef metadata) {
  llvm::IRBuilder<> b(module.getContext());
  defineLayerFunction(module, "moec_abi_version", b.getInt32Ty(), {}, b);
  b.CreateRet(b.getInt32(kLayerABIVersion));
  defineLayerFunction(module, "moec_layer_metadata", b.getPtrTy(), {}, b);
  b.CreateRet(b.CreateGlobalString(metadata, "moec.metadata"));
}

llvm::Error mlir::moe::addLayerABI(llvm::Module &module,
                                   llvm::StringRef metadata) {
  llvm::Function *entry =
      module.getFunction(("_mlir_ciface_" + kEntryName).str());
  if (!entry)
    return error("the lowered module has no C interface for @moe_forward");
  addLayerIdentity(module, metadata);

  // moec_forward(void **args): args[i] points at argument i's descriptor.
  llvm::IRBuilder<> b(module.getContext());
  llvm::Type *ptr = b.getPtrTy();
  llvm::Function *forward =
      defineLayerFunction(module, "moec_forward", b.getVoidTy(), {ptr}, b);
  llvm::SmallVector<llvm::Value *> args;
  for (unsigned i = 0; i < entry->arg_size(); ++i)
    args.push_back(b.CreateLoad(
        ptr, b.CreateConstGEP1_64(ptr, forward->getArg(0), i)));
  b.CreateCall(entry, args);
  b.CreateRetVoid();
  return llvm::Error::success();
}
