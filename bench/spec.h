//===- spec.h - What moe-bench knows about the layer it measures ---------===//
//
// LayerInfo: sizes, FLOPs and weight bytes, read from the layer's metadata
// JSON (docs/abi.md). Spec: the block's routing semantics (docs/families.md),
// from the Hugging Face config.json, or from the metadata and the family's
// defaults when only a LAYER.so is given. The baselines compute the block
// from the Spec; the FLOP and byte counts come from LayerInfo alone.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_BENCH_SPEC_H
#define MOE_BENCH_SPEC_H

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace moebench {

// Every error moe-bench reports: one line, no "error:" prefix.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct WeightArg {
  std::string name;            // relative to the block; "{e}" when stacked
  std::string dtype;           // "f32" | "bf16" | "f16"
  std::vector<int64_t> shape;  // checkpoint shape (stacked: [E, ...])
  bool stacked = false;

  int64_t elements() const;         // of the whole argument
  int64_t elementsPerExpert() const; // prod(shape[1:]) when stacked
  // Checkpoint tensor names, prefix prepended, {e} expanded.
  std::vector<std::string> tensorNames(const std::string &prefix) const;
  // Shape of one checkpoint tensor (shape[1:] when stacked).
  std::vector<int64_t> tensorShape() const;
};

int64_t dtypeBytes(const std::string &dtype);

struct LayerInfo {
  nlohmann::json metadata;
  std::string family, moecVersion, threading;
  std::string activationDtype = "f32";  // what the expert matmuls multiply
  std::string gpuMma;                   // cuda layers: "sync" or "wgmma"
  int64_t hidden = 0, experts = 0, topK = 0, capacity = 0;
  bool tokenIndependent = true;
  std::vector<WeightArg> weights;

  std::string expertDtype;           // dtype of the routed expert weights
  int64_t expertElements = 0;        // weight elements of one routed expert
  int64_t expertBytes = 0;           //   ... in bytes, at their dtype
  int64_t sharedElements = 0;        // shared experts (+ their gate), all of them
  int64_t sharedBytes = 0;
  // FLOPs per token: 2 * (k * expertElements + sharedElements + router).
  double flopsPerToken = 0;

  static LayerInfo fromMetadata(const std::string &json);
  double flops(int64_t tokens) const { return flopsPerToken * double(tokens); }
  // Expert weight bytes one forward reads when `hit` distinct experts get
  // tokens, each element stored in `bytesPerElement` bytes (0: the layer's
  // own dtypes).
  double weightBytes(int64_t hit, int bytesPerElement = 0) const;
};

// The block's semantics, as in tests/reference/moe_reference.py.
struct Spec {
  std::string family;
  int64_t hidden = 0, inter = 0, experts = 0, topK = 0;
  std::string act = "silu";         // silu|swish|gelu|gelu_new|gelu_pytorch_tanh|relu
  std::string scoring = "softmax";  // softmax|sigmoid
  std::string groupScore;           // ""|"max"|"top2_sum"
  int64_t nGroup = 1, topkGroup = 1;
  bool renormalize = false;
  double renormEps = 0.0, scaling = 1.0;
  int64_t capacity = 0, sharedInter = 0;
  bool sharedGate = false;          // qwen2_moe: sigmoid(x . shared_expert_gate)
  std::map<std::string, std::string> names;  // role -> tensor name ({e})
  std::string source;               // "config" | "metadata defaults"

  bool gated() const { return names.count("gate") != 0; }
  static Spec fromConfig(const nlohmann::json &cfg);
  // Family defaults for what the metadata does not record.
  static Spec fromLayer(const LayerInfo &layer);
  // Checks the spec's tensors against the layer's weight arguments.
  void checkAgainst(const LayerInfo &layer) const;
  nlohmann::json toJson() const;
};

}  // namespace moebench

#endif
