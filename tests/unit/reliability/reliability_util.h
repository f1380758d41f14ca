//===- reliability_util.h - Real compiled layers for the reliability tests ===//
//
// The reliability tests run layers that moec really compiled (the bundled
// examples, and a Mixtral-shaped layer for scale) through libmoert's C API.
// Layers are compiled once into MOE_RELIABILITY_LAYER_DIR by the ctest
// fixture "reliability: compile layers" (or on first use, when a test is run
// on its own).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TESTS_RELIABILITY_UTIL_H
#define MOE_TESTS_RELIABILITY_UTIL_H

#include "moert/moert.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace moe::reliability {

/// Every family of examples/, in the order of docs/families.md.
const std::vector<std::string> &families();

/// examples/FAMILY/NAME in the source tree.
std::string examplePath(const std::string &family, const std::string &name);
/// The block prefix of the example's checkpoint (examples/F/prefix.txt).
std::string examplePrefix(const std::string &family);

/// Runs `moec compile CONFIG -o OUT ARGS...`; returns moec's exit status and
/// puts its stderr into `*log`. The library appears at OUT atomically.
int compileLayer(const std::string &config, const std::string &out,
                 const std::vector<std::string> &args, std::string *log);
/// How an example layer is compiled.
enum class Variant {
  f32,
  /// bf16 weights packed in pairs of inputs, bf16 activations, widened
  /// (--weight-dtype bf16 --activation-dtype bf16 --k-pack 2 --bf16-dot none).
  bf16Pairs,
  /// The same through the data flow of AVX-512 BF16 dot products, each one
  /// emulated by two f32 multiply-adds (--bf16-dot emulate).
  bf16DotEmulated,
};

/// The example's layer compiled by moec as `variant` (compiled now if the
/// fixture has not). Fails the test if moec fails.
std::string exampleLayer(const std::string &family,
                         Variant variant = Variant::f32);

/// The Mixtral-shaped layer of the scale test (hidden 1024, intermediate
/// 2816, 8 experts, top-2, f32 weights), compiled like exampleLayer.
std::string scaleLayer();
constexpr int64_t kScaleHidden = 1024, kScaleWidth = 2816, kScaleExperts = 8;

/// Compiles every layer above (the ctest fixture).
void compileAllLayers();

/// Runs a program; returns its exit status (-1 if it did not exit).
int runProgram(const std::vector<std::string> &argv, std::string *out,
               std::string *err);

/// A layer handle closed at scope exit.
class Layer {
public:
  Layer() = default;
  /// Opens `so`; with `weights`, loads them under `prefix`. REQUIREs success.
  Layer(const std::string &so, const std::string &weights = "",
        const std::string &prefix = "");
  ~Layer() { moert_layer_close(handle_); }
  Layer(const Layer &) = delete;
  Layer &operator=(const Layer &) = delete;
  operator moert_layer *() const { return handle_; }
  int64_t hidden() const { return moert_layer_hidden_size(handle_); }
  int64_t experts() const { return moert_layer_num_experts(handle_); }
  int64_t topK() const { return moert_layer_top_k(handle_); }

  /// One forward call; REQUIREs success.
  std::vector<float> forward(const std::vector<float> &x) const;
  /// The statistics of the last call and of all calls.
  std::vector<int64_t> lastStats(int64_t *tokens = nullptr) const;
  std::vector<int64_t> totalStats(int64_t *tokens = nullptr) const;

private:
  moert_layer *handle_ = nullptr;
};

/// The example layer of `family` with the example's weights loaded.
struct ExampleLayer : Layer {
  explicit ExampleLayer(const std::string &family,
                        Variant variant = Variant::f32)
      : Layer(exampleLayer(family, variant),
              examplePath(family, "model.safetensors"),
              examplePrefix(family)) {}
};

/// `tokens` x `hidden` standard-normal-ish floats from `seed`.
std::vector<float> randomInput(int64_t tokens, int64_t hidden, uint64_t seed);

/// "" if a and b hold the same bits, else where they first differ.
std::string firstDifference(const std::vector<float> &a,
                            const std::vector<float> &b, int64_t hidden);

/// Resident set size now, and its peak since the last resetPeakRss().
size_t rssBytes();
size_t peakRssBytes();
/// Resets the peak (Linux: /proc/self/clear_refs); false if not possible.
bool resetPeakRss();

/// A tensor of a checkpoint, raw: dtype as in safetensors ("F32").
struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
std::vector<RawTensor> readCheckpoint(const std::string &path);
void writeCheckpoint(const std::string &path,
                     const std::vector<RawTensor> &tensors);

/// A fresh directory under $TMPDIR, removed with its files at scope exit.
class ScratchDir {
public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir &) = delete;
  ScratchDir &operator=(const ScratchDir &) = delete;
  std::string path(const std::string &name) const { return dir_ + "/" + name; }

private:
  std::string dir_;
};

/// True when this binary runs under AddressSanitizer (its memory use and
/// speed differ; leak checks happen at exit).
bool underAddressSanitizer();

} // namespace moe::reliability

#endif // MOE_TESTS_RELIABILITY_UTIL_H
