//===- numerics_test.cpp - NaN/Inf isolation and routing ties ------------===//
//
// docs/families.md: NaN or Inf in a token's input affects that token's
// output only, and selection stays deterministic (a NaN score is never
// "greater", so the first eligible experts win); ties in any selection go to
// the lower index. Checked on every family's example layer.
//
//===----------------------------------------------------------------------===//

#include "reliability_util.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>

using namespace moe::reliability;

namespace {
int64_t capacityOf(const Layer &layer) {
  auto metadata = nlohmann::json::parse(moert_layer_metadata(layer));
  return metadata.value("capacity", int64_t(0));
}

/// The routing weights of the layer (router rows and selection bias), by
/// their full checkpoint name.
std::vector<std::string> routingTensors(const Layer &layer,
                                        const std::string &prefix) {
  auto metadata = nlohmann::json::parse(moert_layer_metadata(layer));
  std::vector<std::string> names;
  for (const auto &arg : metadata["arguments"]) {
    std::string name = arg["name"];
    if (arg["role"] == "weight" &&
        (name == "gate.weight" || name == "router.classifier.weight" ||
         name == "gate.e_score_correction_bias"))
      names.push_back(prefix + name);
  }
  return names;
}

/// The stats a batch of `tokens` gets when every token picks experts
/// 0 .. k-1: each of those fills `tokens` slots, capacity permitting.
std::vector<int64_t> lowestExperts(const Layer &layer, int64_t tokens) {
  std::vector<int64_t> counts(size_t(layer.experts()), 0);
  int64_t capacity = capacityOf(layer);
  for (int64_t e = 0; e < layer.topK(); ++e)
    counts[size_t(e)] = capacity ? std::min(tokens, capacity) : tokens;
  return counts;
}

bool anyNonFinite(const std::vector<float> &y, int64_t token, int64_t hidden) {
  for (int64_t h = 0; h < hidden; ++h)
    if (!std::isfinite(y[size_t(token * hidden + h)]))
      return true;
  return false;
}
} // namespace

TEST_CASE("numbers: NaN, Inf and extreme values in some tokens affect those "
          "tokens only",
          "[numbers]") {
  std::string family = GENERATE(from_range(families()));
  CAPTURE(family);
  ExampleLayer layer(family);
  int64_t hidden = layer.hidden();
  // A capacity makes tokens compete for slots in token order, so a NaN
  // token (routed to expert 0) could displace a later token: keep such a
  // batch within one expert's capacity.
  int64_t capacity = capacityOf(layer);
  int64_t tokens = capacity ? std::min<int64_t>(capacity, 300) : 300;
  std::vector<float> clean = randomInput(tokens, hidden, 11);

  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // token -> how it is poisoned
  std::map<int64_t, std::function<void(float *)>> poison = {
      {1, [&](float *row) { row[5] = nan; }},
      {tokens / 2, [&](float *row) { row[0] = inf; }},
      {tokens / 2 + 1, [&](float *row) { row[hidden - 1] = -inf; }},
      {tokens - 1,
       [&](float *row) {
         for (int64_t h = 0; h < hidden; ++h)
           row[h] = h % 2 ? nan : inf;
       }},
  };
  // Extreme but finite inputs: whatever they give, it stays theirs.
  std::map<int64_t, std::function<void(float *)>> extreme = {
      {2,
       [&](float *row) {
         for (int64_t h = 0; h < hidden; ++h)
           row[h] = h % 3 ? std::numeric_limits<float>::max()
                          : -std::numeric_limits<float>::max();
       }},
      {3,
       [&](float *row) {
         for (int64_t h = 0; h < hidden; ++h)
           row[h] = std::numeric_limits<float>::denorm_min() * float(h % 7);
       }},
  };
  std::vector<float> x = clean;
  for (auto &[token, edit] : poison)
    edit(x.data() + token * hidden);
  for (auto &[token, edit] : extreme)
    edit(x.data() + token * hidden);

  for (int threads : {1, 3}) {
    CAPTURE(threads);
    REQUIRE(moert_layer_set_threads(layer, threads) == MOERT_OK);
    std::vector<float> want = layer.forward(clean);
    std::vector<float> y = layer.forward(x);
    for (int64_t t = 0; t < tokens; ++t) {
      CAPTURE(t);
      if (poison.count(t)) {
        // The poison shows in the output: never a silently finite result.
        CHECK(anyNonFinite(y, t, hidden));
      } else if (!extreme.count(t)) {
        CHECK(std::memcmp(y.data() + t * hidden, want.data() + t * hidden,
                          size_t(hidden) * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("numbers: all-NaN tokens route to experts 0..k-1", "[numbers]") {
  std::string family = GENERATE(from_range(families()));
  CAPTURE(family);
  ExampleLayer layer(family);
  constexpr int64_t kTokens = 40;
  std::vector<float> x(size_t(kTokens * layer.hidden()),
                       std::numeric_limits<float>::quiet_NaN());
  layer.forward(x);
  CHECK(layer.lastStats() == lowestExperts(layer, kTokens));
}

TEST_CASE("numbers: routing ties go to the lower expert index", "[numbers]") {
  std::string family = GENERATE(from_range(families()));
  // zero: all-zero router (and selection bias): every score equal.
  // equal: every router row the same non-zero row: equal, non-trivial scores.
  std::string variant = GENERATE(as<std::string>(), "zero", "equal");
  CAPTURE(family, variant);
  std::string prefix = examplePrefix(family);
  ScratchDir dir;
  std::vector<RawTensor> tensors =
      readCheckpoint(examplePath(family, "model.safetensors"));
  std::vector<std::string> routing;
  {
    Layer probe(exampleLayer(family));
    routing = routingTensors(probe, prefix);
  }
  REQUIRE(!routing.empty());
  for (RawTensor &t : tensors) {
    if (std::find(routing.begin(), routing.end(), t.name) == routing.end())
      continue;
    REQUIRE(t.dtype == "F32");
    if (variant == "zero" || t.shape.size() == 1) { // the bias: all zero
      std::fill(t.bytes.begin(), t.bytes.end(), '\0');
    } else { // every row a copy of row 0
      size_t row = t.bytes.size() / size_t(t.shape[0]);
      for (size_t r = 1; r < size_t(t.shape[0]); ++r)
        t.bytes.replace(r * row, row, t.bytes, 0, row);
    }
  }
  std::string weights = dir.path("tied.safetensors");
  writeCheckpoint(weights, tensors);

  Layer layer(exampleLayer(family), weights, prefix);
  constexpr int64_t kTokens = 100;
  std::vector<float> y = layer.forward(randomInput(kTokens, layer.hidden(), 5));
  CHECK(layer.lastStats() == lowestExperts(layer, kTokens));
  for (float v : y)
    REQUIRE(std::isfinite(v));
}
