//===- MoEOps.cpp - Operations of the moe dialect -------------------------===//
//
// Verifiers. Every shape rule names the operand and both shapes, so that an
// error in a hand-written or generated layer points at the exact mismatch.
//
//===----------------------------------------------------------------------===//

#include "dialect/MoE/IR/MoEOps.h"

#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;

#include "dialect/MoE/IR/MoEEnums.cpp.inc"

#define GET_OP_CLASSES
#include "dialect/MoE/IR/MoEOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Shared checks
//===----------------------------------------------------------------------===//

namespace {
/// A dimension in an expected shape that matches anything.
constexpr int64_t kAny = ShapedType::kDynamic;

void printShape(llvm::raw_ostream &os, ArrayRef<int64_t> shape) {
  os << '[';
  llvm::interleaveComma(shape, os, [&](int64_t d) {
    if (ShapedType::isDynamic(d))
      os << '?';
    else
      os << d;
  });
  os << ']';
}

std::string shapeString(ArrayRef<int64_t> shape) {
  std::string s;
  llvm::raw_string_ostream os(s);
  printShape(os, shape);
  return s;
}

/// Checks `value`'s shape against `expected`, where a dynamic dimension on
/// either side matches anything.
LogicalResult expectShape(Operation *op, Type type, ArrayRef<int64_t> expected,
                          StringRef name) {
  auto shape = cast<ShapedType>(type).getShape();
  bool ok = shape.size() == expected.size() &&
            llvm::all_of(llvm::zip(shape, expected), [](auto pair) {
              auto [a, b] = pair;
              return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) ||
                     a == b;
            });
  if (ok)
    return success();
  return op->emitOpError() << name << " has shape " << shapeString(shape)
                           << ", expected " << shapeString(expected);
}

LogicalResult expectShape(Operation *op, Value value,
                          ArrayRef<int64_t> expected, StringRef name) {
  return expectShape(op, value.getType(), expected, name);
}

Type elementType(Type type) { return cast<ShapedType>(type).getElementType(); }

LogicalResult expectSameElementType(Operation *op, Type type, Type reference,
                                    StringRef name, StringRef referenceName) {
  if (elementType(type) == elementType(reference))
    return success();
  return op->emitOpError() << name << " element type " << elementType(type)
                           << " does not match the " << referenceName << "'s ("
                           << elementType(reference) << ")";
}

/// The number of experts, taken from a static dimension.
FailureOr<int64_t> staticExperts(Operation *op, Type type, unsigned dim,
                                 StringRef name) {
  int64_t experts = cast<ShapedType>(type).getDimSize(dim);
  if (ShapedType::isDynamic(experts))
    return op->emitOpError() << "requires a static number of experts in "
                             << name;
  return experts;
}

/// The rules of expert selection shared by moe.layer and moe.topk.
LogicalResult verifySelection(Operation *op, int64_t experts, int64_t k,
                              int64_t groups, int64_t topkGroups,
                              GroupScore groupScore, double scalingFactor) {
  if (k > experts)
    return op->emitOpError() << "k (" << k
                             << ") exceeds the number of experts (" << experts
                             << ")";
  if (experts % groups != 0)
    return op->emitOpError() << "groups (" << groups
                             << ") do not divide the number of experts ("
                             << experts << ")";
  if (topkGroups > groups)
    return op->emitOpError() << "topk_groups (" << topkGroups
                             << ") exceeds groups (" << groups << ")";
  int64_t perGroup = experts / groups;
  if (k > topkGroups * perGroup)
    return op->emitOpError()
           << "k (" << k << ") exceeds the " << topkGroups * perGroup
           << " experts of the topk_groups (" << topkGroups
           << ") best groups of " << perGroup;
  if (groupScore == GroupScore::top2_sum && groups > 1 && perGroup < 2)
    return op->emitOpError()
           << "group_score top2_sum needs at least 2 experts per group, got "
           << perGroup;
  if (!std::isfinite(scalingFactor) || scalingFactor <= 0.0)
    return op->emitOpError()
           << "scaling_factor must be positive and finite, got "
           << scalingFactor;
  return success();
}

/// How FFN weights are laid out: PyTorch's `[out, in]` (panel 0), or
/// panels of `panel` outputs, each lane holding `kPack` consecutive inputs.
struct WeightLayout {
  int64_t panel = 0;
  int64_t kPack = 1;
};

/// The shape of a weight `[out, in]` after an optional leading `[experts]`,
/// in `layout`.
SmallVector<int64_t> weightShape(std::optional<int64_t> experts, int64_t out,
                                 int64_t in, WeightLayout layout) {
  SmallVector<int64_t> shape;
  if (experts)
    shape.push_back(*experts);
  if (layout.panel == 0) {
    shape.append({out, in});
  } else {
    int64_t panels = ShapedType::isDynamic(out)
                         ? kAny
                         : llvm::divideCeilSigned(out, layout.panel);
    int64_t depth = ShapedType::isDynamic(in) ? kAny : in / layout.kPack;
    shape.append({panels, depth, layout.panel * layout.kPack});
  }
  return shape;
}

/// The FFN op's weight layout attributes.
template <typename OpTy>
WeightLayout layoutOf(OpTy op) {
  return {static_cast<int64_t>(op.getWeightPanel()),
          static_cast<int64_t>(op.getWeightKPack())};
}

/// Checks `weight_k_pack`: 1, or 2 for panels of bf16 weights whose inputs
/// (hidden and width) come in whole pairs.
LogicalResult verifyKPack(Operation *op, WeightLayout layout, Value up,
                          int64_t hidden, int64_t width) {
  if (layout.kPack == 1)
    return success();
  if (layout.kPack != 2)
    return op->emitOpError() << "weight_k_pack must be 1 or 2, got "
                             << layout.kPack;
  if (layout.panel == 0)
    return op->emitOpError("weight_k_pack needs weights packed into panels "
                           "(weight_panel > 0)");
  if (!cast<ShapedType>(up.getType()).getElementType().isBF16())
    return op->emitOpError("weight_k_pack = 2 needs bf16 weights");
  for (int64_t size : {hidden, width})
    if (ShapedType::isDynamic(size) || size % 2 != 0)
      return op->emitOpError()
             << "weight_k_pack = 2 needs even hidden and width sizes, got "
             << hidden << " and " << width;
  return success();
}

/// The expert width: from `up` (`[.., width, hidden]`), or from `down`'s
/// panels (`[.., panels, width / kPack, panel * kPack]`) when packed.
int64_t widthOf(Value up, Value down, WeightLayout layout) {
  if (layout.panel == 0) {
    auto type = cast<ShapedType>(up.getType());
    return type.getDimSize(type.getRank() - 2);
  }
  auto type = cast<ShapedType>(down.getType());
  int64_t depth = type.getDimSize(type.getRank() - 2);
  return ShapedType::isDynamic(depth) ? depth : depth * layout.kPack;
}

/// Checks a routed experts' weights: gate/up `[E, I, H]`, down `[E, H, I]`
/// (or their panels). Returns the expert width `I`.
FailureOr<int64_t> verifyExpertWeights(Operation *op, int64_t experts,
                                       int64_t hidden, Value gate, Value up,
                                       Value down, WeightLayout layout = {}) {
  int64_t panel = layout.panel;
  int64_t rank = panel ? 4 : 3;
  for (Value w : {gate, up, down})
    if (w && cast<ShapedType>(w.getType()).getRank() != rank)
      return op->emitOpError()
             << "expert weights must have rank " << rank
             << (panel ? " (packed into panels)" : "") << ", got "
             << cast<ShapedType>(w.getType()).getRank();
  int64_t width = widthOf(up, down, layout);
  if (failed(verifyKPack(op, layout, up, hidden, width)))
    return failure();
  if (failed(expectShape(op, up, weightShape(experts, width, hidden, layout),
                         "expert up weight")))
    return failure();
  if (gate && failed(expectShape(op, gate,
                                 weightShape(experts, width, hidden, layout),
                                 "expert gate weight")))
    return failure();
  if (failed(expectShape(op, down, weightShape(experts, hidden, width, layout),
                         "expert down weight")))
    return failure();
  return width;
}

/// Checks a shared expert's weights: gate/up `[S, H]`, down `[H, S]` (or
/// their panels), and the optional sigmoid gate `[1, H]`.
LogicalResult verifySharedWeights(Operation *op, int64_t hidden, Value gate,
                                  Value up, Value down, Value expertGate,
                                  WeightLayout layout = {}) {
  int64_t panel = layout.panel;
  int64_t rank = panel ? 3 : 2;
  for (Value w : {gate, up, down})
    if (w && cast<ShapedType>(w.getType()).getRank() != rank)
      return op->emitOpError()
             << "shared expert weights must have rank " << rank
             << (panel ? " (packed into panels)" : "") << ", got "
             << cast<ShapedType>(w.getType()).getRank();
  int64_t width = widthOf(up, down, layout);
  if (failed(verifyKPack(op, layout, up, hidden, width)))
    return failure();
  if (failed(expectShape(op, up,
                         weightShape(std::nullopt, width, hidden, layout),
                         "shared expert up weight")))
    return failure();
  if (gate && failed(expectShape(op, gate,
                                 weightShape(std::nullopt, width, hidden, layout),
                                 "shared expert gate weight")))
    return failure();
  if (failed(expectShape(op, down,
                         weightShape(std::nullopt, hidden, width, layout),
                         "shared expert down weight")))
    return failure();
  if (expertGate && failed(expectShape(op, expertGate, {1, hidden},
                                       "shared expert sigmoid gate")))
    return failure();
  return success();
}
} // namespace

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

int64_t LayerOp::getNumExperts() {
  return getRouterWeight().getType().getDimSize(0);
}

int64_t LayerOp::getHiddenSize() { return getInput().getType().getDimSize(1); }

LogicalResult LayerOp::verify() {
  Operation *op = getOperation();
  FailureOr<int64_t> experts =
      staticExperts(op, getRouterWeight().getType(), 0, "the router weight");
  if (failed(experts))
    return failure();
  int64_t tokens = getInput().getType().getDimSize(0);
  int64_t hidden = getHiddenSize();
  if (failed(expectShape(op, getRouterWeight(), {*experts, hidden},
                         "router weight")))
    return failure();
  if (getSelectionBias() &&
      failed(expectShape(op, getSelectionBias(), {*experts}, "selection bias")))
    return failure();
  if (failed(verifySelection(op, *experts, getK(), getGroups(),
                             getTopkGroups(), getGroupScore(),
                             getScalingFactor().convertToDouble())))
    return failure();
  if (failed(verifyExpertWeights(op, *experts, hidden, getExpertGate(),
                                 getExpertUp(), getExpertDown())))
    return failure();

  bool hasShared = getSharedUp() || getSharedDown();
  if (hasShared && !(getSharedUp() && getSharedDown()))
    return emitOpError("shared_up and shared_down must be given together");
  if (!hasShared && getSharedGate())
    return emitOpError("shared_gate requires shared_up and shared_down");
  if (!hasShared && getSharedExpertGate())
    return emitOpError("shared_expert_gate requires shared_up and shared_down");
  if (hasShared &&
      failed(verifySharedWeights(op, hidden, getSharedGate(), getSharedUp(),
                                 getSharedDown(), getSharedExpertGate())))
    return failure();

  if (failed(expectShape(op, getOutput(), {tokens, hidden}, "output")) ||
      failed(expectSameElementType(op, getOutput().getType(),
                                   getInput().getType(), "output", "input")) ||
      failed(expectShape(op, getTokensPerExpert(), {*experts},
                         "tokens_per_expert")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// RouterOp
//===----------------------------------------------------------------------===//

LogicalResult RouterOp::verify() {
  Operation *op = getOperation();
  FailureOr<int64_t> experts =
      staticExperts(op, getWeight().getType(), 0, "the router weight");
  if (failed(experts))
    return failure();
  int64_t tokens = getInput().getType().getDimSize(0);
  int64_t hidden = getInput().getType().getDimSize(1);
  if (failed(expectShape(op, getWeight(), {*experts, hidden}, "router weight")))
    return failure();
  for (auto [value, name] :
       {std::pair<Value, StringRef>{getLogits(), "logits"},
        std::pair<Value, StringRef>{getScores(), "scores"}}) {
    if (failed(expectShape(op, value, {tokens, *experts}, name)) ||
        failed(expectSameElementType(op, value.getType(), getInput().getType(),
                                     name, "input")))
      return failure();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// TopKOp
//===----------------------------------------------------------------------===//

LogicalResult TopKOp::verify() {
  Operation *op = getOperation();
  FailureOr<int64_t> experts =
      staticExperts(op, getScores().getType(), 1, "the scores");
  if (failed(experts))
    return failure();
  if (failed(verifySelection(op, *experts, getK(), getGroups(),
                             getTopkGroups(), getGroupScore(),
                             getScalingFactor().convertToDouble())))
    return failure();
  if (getSelectionBias() &&
      failed(expectShape(op, getSelectionBias(), {*experts}, "selection bias")))
    return failure();
  int64_t tokens = getScores().getType().getDimSize(0);
  if (failed(expectShape(op, getWeights(), {tokens, (int64_t)getK()},
                         "weights")) ||
      failed(expectSameElementType(op, getWeights().getType(),
                                   getScores().getType(), "weights",
                                   "scores")) ||
      failed(expectShape(op, getIndices(), {tokens, (int64_t)getK()},
                         "indices")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// DispatchOp
//===----------------------------------------------------------------------===//

LogicalResult DispatchOp::verify() {
  Operation *op = getOperation();
  auto indices = getIndices().getType();
  if (failed(expectShape(op, getSlotRows(), indices.getShape(), "slot_rows")) ||
      failed(expectShape(op, getExpertOffsets(),
                         {(int64_t)getNumExperts() + 1}, "expert_offsets")))
    return failure();
  // The row count depends on the routing: it is only known at run time.
  for (auto [value, name] :
       {std::pair<Value, StringRef>{getSortedSlots(), "sorted_slots"},
        std::pair<Value, StringRef>{getTileExperts(), "tile_experts"}})
    if (!cast<ShapedType>(value.getType()).isDynamicDim(0))
      return emitOpError() << name << " must have a dynamic size";
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertFFNOp
//===----------------------------------------------------------------------===//

LogicalResult ExpertFFNOp::verify() {
  Operation *op = getOperation();
  FailureOr<int64_t> experts =
      staticExperts(op, getUp().getType(), 0, "the expert up weight");
  if (failed(experts))
    return failure();
  int64_t tokens = getInput().getType().getDimSize(0);
  int64_t hidden = getInput().getType().getDimSize(1);
  if (failed(verifyExpertWeights(op, *experts, hidden, getGate(), getUp(),
                                 getDown(),
                                 layoutOf(*this))))
    return failure();
  if (failed(expectShape(op, getWeights(), {tokens, kAny}, "weights")))
    return failure();
  int64_t rows = getSortedSlots().getType().getDimSize(0);
  if (failed(expectShape(op, getOutput(), {rows, hidden}, "output")) ||
      failed(expectSameElementType(op, getOutput().getType(),
                                   getInput().getType(), "output", "input")))
    return failure();
  return success();
}

int64_t ExpertFFNOp::getWidth() {
  return widthOf(getUp(), getDown(), layoutOf(*this));
}

//===----------------------------------------------------------------------===//
// SharedExpertOp
//===----------------------------------------------------------------------===//

int64_t SharedExpertOp::getWidth() {
  return widthOf(getUp(), getDown(), layoutOf(*this));
}

LogicalResult SharedExpertOp::verify() {
  Operation *op = getOperation();
  int64_t tokens = getInput().getType().getDimSize(0);
  int64_t hidden = getInput().getType().getDimSize(1);
  if (failed(verifySharedWeights(op, hidden, getGate(), getUp(), getDown(),
                                 getExpertGate(),
                                 layoutOf(*this))))
    return failure();
  if (failed(expectShape(op, getOutput(), {tokens, hidden}, "output")) ||
      failed(expectSameElementType(op, getOutput().getType(),
                                   getInput().getType(), "output", "input")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

LogicalResult CombineOp::verify() {
  Operation *op = getOperation();
  int64_t tokens = getSlotRows().getType().getDimSize(0);
  int64_t hidden = getRows().getType().getDimSize(1);
  if (getAddend() &&
      (failed(expectShape(op, getAddend(), {tokens, hidden}, "addend")) ||
       failed(expectSameElementType(op, getAddend().getType(),
                                    getRows().getType(), "addend", "rows"))))
    return failure();
  if (failed(expectShape(op, getOutput(), {tokens, hidden}, "output")) ||
      failed(expectSameElementType(op, getOutput().getType(),
                                   getRows().getType(), "output", "rows")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// StatsOp
//===----------------------------------------------------------------------===//

LogicalResult StatsOp::verify() {
  if (!getTokensPerExpert().getType().hasStaticShape())
    return emitOpError("requires a static number of experts in the result");
  return success();
}

//===----------------------------------------------------------------------===//
// AuxLossOp
//===----------------------------------------------------------------------===//

LogicalResult AuxLossOp::verify() {
  Operation *op = getOperation();
  if (getKind() == AuxLossKind::load_balancing && !getIndices())
    return emitOpError("load_balancing needs the expert indices");
  if (getIndices() &&
      failed(expectShape(op, getIndices(),
                         {getLogits().getType().getDimSize(0), kAny},
                         "indices")))
    return failure();
  return success();
}
