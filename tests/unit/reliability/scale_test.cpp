//===- scale_test.cpp - 0 tokens, 1 token, 131072 tokens ------------------===//

#include "reliability_util.h"

#include "runtime/src/npy.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <fstream>

using namespace moe::reliability;

TEST_CASE("scale: 0 tokens through the C API", "[scale]") {
  std::string family = GENERATE(from_range(families()));
  CAPTURE(family);
  ExampleLayer layer(family);
  std::vector<float> x = randomInput(5, layer.hidden(), 1);
  layer.forward(x);
  int64_t tokens = -1;
  std::vector<int64_t> before = layer.totalStats(&tokens);
  REQUIRE(tokens == 5);

  CHECK(moert_layer_forward(layer, nullptr, 0, nullptr) == MOERT_OK);
  float sentinel = 7.0f;
  CHECK(moert_layer_forward(layer, &sentinel, 0, &sentinel) == MOERT_OK);
  CHECK(sentinel == 7.0f); // nothing written
  int64_t last = -1;
  CHECK(layer.lastStats(&last) == std::vector<int64_t>(before.size(), 0));
  CHECK(last == 0);
  CHECK(layer.totalStats(&tokens) == before);
  CHECK(tokens == 5);
  CHECK(moert_layer_workspace_bytes(layer, 0) == 0);
}

TEST_CASE("scale: 0 tokens through moe-run write a [0, hidden] output",
          "[scale]") {
  std::string family = GENERATE(from_range(families()));
  CAPTURE(family);
  int64_t hidden = Layer(exampleLayer(family)).hidden();
  ScratchDir dir;
  moert::writeNpyF32(dir.path("x.npy"), nullptr, {0, hidden});
  std::string err;
  int status = runProgram(
      {MOE_RUN, exampleLayer(family), "--weights",
       examplePath(family, "model.safetensors"), "--prefix",
       examplePrefix(family), "--input", dir.path("x.npy"), "--output",
       dir.path("y.npy"), "--stats", dir.path("stats.json")},
      nullptr, &err);
  INFO(err);
  REQUIRE(status == 0);
  moert::NpyArray y = moert::readNpyF32(dir.path("y.npy"), 2);
  CHECK(y.shape == std::vector<int64_t>{0, hidden});
  CHECK(y.data.empty());
  auto stats = nlohmann::json::parse(std::ifstream(dir.path("stats.json")));
  CHECK(stats["tokens"] == 0);
  CHECK(stats["imbalance"] == 0.0);
  for (const auto &c : stats["tokens_per_expert"])
    CHECK(c == 0);
}

TEST_CASE("scale: 1 token gives the bits it gets in a large batch",
          "[scale]") {
  std::string family = GENERATE(from_range(families()));
  CAPTURE(family);
  ExampleLayer layer(family);
  int64_t hidden = layer.hidden();
  std::vector<float> x = randomInput(300, hidden, 9);
  std::vector<float> batch = layer.forward(x);
  // Token 0 is the first in capacity order too, so it is never dropped.
  std::vector<float> one = layer.forward({x.begin(), x.begin() + hidden});
  CHECK(firstDifference(one, {batch.begin(), batch.begin() + hidden},
                        hidden) == "");
  int64_t tokens = 0;
  std::vector<int64_t> counts = layer.lastStats(&tokens);
  CHECK(tokens == 1);
  int64_t slots = 0;
  for (int64_t c : counts)
    slots += c;
  CHECK(slots == layer.topK());
}

namespace {
/// A random checkpoint for the scale layer: router F32, experts BF16 (as
/// Mixtral ships), values of about +-0.03 so that activations stay O(1).
uint64_t writeScaleCheckpoint(const std::string &path) {
  uint64_t state = 12345;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  auto bf16 = [&] { // uniform in [-0.05, 0.05), then the top 16 bits
    float v = (float(next() >> 40) * (1.0f / 16777216.0f) - 0.5f) * 0.1f;
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    return uint16_t(bits >> 16);
  };
  const int64_t H = kScaleHidden, I = kScaleWidth, E = kScaleExperts;
  std::vector<RawTensor> tensors;
  std::vector<float> router(size_t(E * H));
  for (float &v : router)
    v = (float(next() >> 40) * (1.0f / 16777216.0f) - 0.5f) * 0.1f;
  tensors.push_back({"gate.weight", "F32", {E, H},
                     std::string(reinterpret_cast<char *>(router.data()),
                                 router.size() * 4)});
  for (int64_t e = 0; e < E; ++e)
    for (const char *w : {"w1", "w3", "w2"}) {
      std::vector<int64_t> shape =
          w[1] == '2' ? std::vector<int64_t>{H, I} : std::vector<int64_t>{I, H};
      std::vector<uint16_t> values(size_t(I * H));
      for (uint16_t &v : values)
        v = bf16();
      tensors.push_back({"experts." + std::to_string(e) + "." + w + ".weight",
                         "BF16", shape,
                         std::string(reinterpret_cast<char *>(values.data()),
                                     values.size() * 2)});
    }
  writeCheckpoint(path, tensors);
  // The bytes the layer holds once loaded: everything as f32.
  return uint64_t(E * H + 3 * E * I * H) * 4;
}
} // namespace

TEST_CASE("scale: 131072 tokens of a Mixtral-shaped layer in bounded memory",
          "[scale][large]") {
  using Clock = std::chrono::steady_clock;
  constexpr int64_t kTokens = 131072, H = kScaleHidden;
  ScratchDir dir;
  std::string weights = dir.path("mixtral.safetensors");
  uint64_t weightBytes = writeScaleCheckpoint(weights);
  Layer layer(scaleLayer(), weights);
  std::remove(weights.c_str()); // the layer keeps its own converted copy
  REQUIRE(moert_layer_set_threads(layer, 0) == MOERT_OK);

  // The bound is known before any token is run, and chunking keeps it
  // independent of the batch: it is that of one 8192-token chunk.
  size_t workspace = moert_layer_workspace_bytes(layer, kTokens);
  size_t chunkWorkspace = moert_layer_workspace_bytes(layer, 8192);
  INFO("workspace bound for " << kTokens << " tokens: " << workspace
                              << " bytes (8192 tokens: " << chunkWorkspace
                              << ")");
  CHECK(workspace > 0);
  CHECK(workspace <= chunkWorkspace + size_t(1 << 20));
  CHECK(workspace < (size_t(1) << 30)); // far below the 1 GiB of x and y

  std::vector<float> x = randomInput(kTokens, H, 2024);
  std::vector<float> y(x.size(), 0.0f);
  size_t ioBytes = 2 * x.size() * sizeof(float);
  bool peakKnown = resetPeakRss();
  size_t before = rssBytes();
  auto start = Clock::now();
  REQUIRE(moert_layer_forward(layer, x.data(), kTokens, y.data()) == MOERT_OK);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  size_t peak = peakRssBytes();
  WARN("131072 tokens: " << seconds << " s; RSS before the call "
                         << (before >> 20) << " MiB, peak " << (peak >> 20)
                         << " MiB, weights " << (weightBytes >> 20)
                         << " MiB, workspace bound " << (workspace >> 20)
                         << " MiB, x + y " << (ioBytes >> 20) << " MiB");

  int64_t tokens = 0;
  std::vector<int64_t> counts = layer.lastStats(&tokens);
  CHECK(tokens == kTokens);
  int64_t slots = 0;
  for (int64_t c : counts)
    slots += c;
  CHECK(slots == 2 * kTokens);
  size_t nonFinite = 0;
  for (float v : y)
    nonFinite += !std::isfinite(v);
  CHECK(nonFinite == 0);

  if (peakKnown && !underAddressSanitizer()) {
    // The call itself adds at most its workspace (plus allocator slack) to
    // what was resident before it: weights, x, y, code.
    constexpr size_t kSlack = size_t(64) << 20;
    CHECK(peak <= before + workspace + kSlack);
    // And the whole process stays within weights + workspace + x + y + the
    // process's own baseline (code, libraries, the checkpoint's pages).
    constexpr size_t kBaseline = size_t(256) << 20;
    CHECK(peak <= weightBytes + workspace + ioBytes + kBaseline);
  }
}
