//===- lifecycle_test.cpp - Opening and closing layers leaks nothing -----===//
//
// 200 open / load / forward / close cycles of a real (OpenMP) layer, with a
// failing load and a failing open in each, must not grow the resident set.
// Under the ASan build (scripts/sanitize.sh) LeakSanitizer checks the same
// cycles for leaks at exit; RSS is not meaningful there (quarantine).
//
//===----------------------------------------------------------------------===//

#include "reliability_util.h"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace moe::reliability;

namespace {
/// One cycle, checking every result.
void cycle(const std::string &so, const std::string &weights,
           const std::string &badWeights, const std::string &prefix,
           const std::vector<float> &x, const std::vector<float> &want) {
  moert_layer *layer = nullptr;
  REQUIRE(moert_layer_open(so.c_str(), &layer) == MOERT_OK);
  // A checkpoint that does not fit fails and changes nothing.
  REQUIRE(moert_layer_load_weights(layer, badWeights.c_str(), prefix.c_str()) ==
          MOERT_ERROR_MISMATCH);
  REQUIRE(moert_layer_load_weights(layer, weights.c_str(), prefix.c_str()) ==
          MOERT_OK);
  REQUIRE(moert_layer_set_threads(layer, 2) == MOERT_OK);
  int64_t hidden = moert_layer_hidden_size(layer);
  std::vector<float> y(x.size());
  REQUIRE(moert_layer_forward(layer, x.data(), int64_t(x.size()) / hidden,
                              y.data()) == MOERT_OK);
  moert_layer_close(layer);
  REQUIRE(firstDifference(y, want, hidden) == "");
  // A library that is not a layer fails to open and leaves nothing behind.
  moert_layer *bad = reinterpret_cast<moert_layer *>(1);
  REQUIRE(moert_layer_open(MOERT_LIBRARY, &bad) == MOERT_ERROR_ABI);
  REQUIRE(bad == nullptr);
}
} // namespace

TEST_CASE("lifecycle: 200 open/load/forward/close cycles do not grow memory",
          "[lifecycle]") {
  std::string family = GENERATE(as<std::string>(), "deepseek_v3", "mixtral");
  CAPTURE(family);
  std::string so = exampleLayer(family);
  std::string weights = examplePath(family, "model.safetensors");
  std::string prefix = examplePrefix(family);
  ScratchDir dir;
  // The example's checkpoint without expert 0's weights.
  std::vector<RawTensor> tensors = readCheckpoint(weights);
  auto expert0 = std::find_if(tensors.begin(), tensors.end(), [](auto &t) {
    return t.name.find("experts.0.") != std::string::npos;
  });
  REQUIRE(expert0 != tensors.end());
  tensors.erase(expert0);
  std::string badWeights = dir.path("bad.safetensors");
  writeCheckpoint(badWeights, tensors);

  std::vector<float> x = randomInput(64, 64, 3), want;
  {
    Layer layer(so, weights, prefix);
    want = layer.forward(x);
  }
  constexpr int kWarmUp = 20, kCycles = 200;
  for (int i = 0; i < kWarmUp; ++i)
    cycle(so, weights, badWeights, prefix, x, want);
  size_t before = rssBytes();
  for (int i = 0; i < kCycles; ++i)
    cycle(so, weights, badWeights, prefix, x, want);
  size_t after = rssBytes();
  INFO("RSS before " << before / 1024 << " KiB, after " << after / 1024
                     << " KiB");
  if (!underAddressSanitizer()) {
    // One leaked copy of this layer's weights per cycle would be ~100 KiB;
    // a leaked library mapping or OpenMP team more. 4 MiB over 200 cycles
    // allows the allocator's noise and nothing systematic.
    CHECK(after <= before + (size_t(4) << 20));
  }
}
