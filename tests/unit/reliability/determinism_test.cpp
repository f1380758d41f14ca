//===- determinism_test.cpp - Same input, same bits; many callers --------===//
//
// Real layers compiled by moec (every family's example): the output depends
// only on the input, never on the run, the thread count, the batch the
// token came in, or other threads calling the same layer at the same time.
//
//===----------------------------------------------------------------------===//

#include "reliability_util.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <thread>

using namespace moe::reliability;

namespace {
int64_t capacityOf(const Layer &layer) {
  auto metadata = nlohmann::json::parse(moert_layer_metadata(layer));
  return metadata.value("capacity", int64_t(0));
}

int64_t sum(const std::vector<int64_t> &v) {
  int64_t s = 0;
  for (int64_t x : v)
    s += x;
  return s;
}
} // namespace

TEST_CASE("determinism: repeated runs and thread counts 1, 2, 3, 8 give the "
          "same bits",
          "[determinism]") {
  std::string family = GENERATE(from_range(families()));
  // f32, and bf16 weights in pairs with bf16 activations (the layout and
  // order of sums of AVX-512 BF16 dot products).
  Variant variant = GENERATE(Variant::f32, Variant::bf16Pairs);
  CAPTURE(family, int(variant));
  ExampleLayer layer(family, variant);
  constexpr int64_t kTokens = 300;
  std::vector<float> x = randomInput(kTokens, layer.hidden(), 42);

  REQUIRE(moert_layer_set_threads(layer, 1) == MOERT_OK);
  std::vector<float> want = layer.forward(x);
  std::vector<int64_t> wantStats = layer.lastStats();
  for (int threads : {1, 2, 3, 8, 1}) {
    CAPTURE(threads);
    REQUIRE(moert_layer_set_threads(layer, threads) == MOERT_OK);
    for (int run = 0; run < 3; ++run) {
      CAPTURE(run);
      CHECK(firstDifference(layer.forward(x), want, layer.hidden()) == "");
      CHECK(layer.lastStats() == wantStats);
    }
  }

  // A second instance of the same library, opened afresh.
  ExampleLayer again(family, variant);
  REQUIRE(moert_layer_set_threads(again, 2) == MOERT_OK);
  CHECK(firstDifference(again.forward(x), want, layer.hidden()) == "");
}

TEST_CASE("determinism: a token's output does not depend on its batch",
          "[determinism]") {
  // Capacity makes a token's fate depend on the tokens before it (Switch):
  // such layers are exempt, as docs/families.md says.
  std::string family = GENERATE(from_range(families()));
  Variant variant = GENERATE(Variant::f32, Variant::bf16Pairs);
  CAPTURE(family, int(variant));
  ExampleLayer layer(family, variant);
  if (capacityOf(layer) != 0)
    return;
  int64_t hidden = layer.hidden();
  constexpr int64_t kTokens = 300;
  std::vector<float> x = randomInput(kTokens, hidden, 7);
  std::vector<float> whole = layer.forward(x);
  // Batches of 1, 2, 7, 64, 129 (tile sizes and their neighbours) and the
  // rest, at odd offsets.
  int64_t start = 0;
  for (int64_t size : {int64_t(1), int64_t(2), int64_t(7), int64_t(64),
                       int64_t(129), kTokens - 203}) {
    CAPTURE(start, size);
    std::vector<float> part(x.begin() + start * hidden,
                            x.begin() + (start + size) * hidden);
    std::vector<float> want(whole.begin() + start * hidden,
                            whole.begin() + (start + size) * hidden);
    CHECK(firstDifference(layer.forward(part), want, hidden) == "");
    start += size;
  }
  REQUIRE(start == kTokens);
}

TEST_CASE("concurrency: 8 threads calling one layer get the serial bits and "
          "exact statistics",
          "[concurrency]") {
  std::string family = GENERATE(from_range(families()));
  CAPTURE(family);
  ExampleLayer layer(family);
  int64_t hidden = layer.hidden(), k = layer.topK();
  bool capacity = capacityOf(layer) != 0;
  REQUIRE(moert_layer_set_threads(layer, 2) == MOERT_OK);

  constexpr int kCallers = 8, kRounds = 6;
  std::vector<std::vector<float>> inputs, outputs;
  std::vector<int64_t> wantCounts(size_t(layer.experts()), 0);
  int64_t wantTokens = 0;
  for (int c = 0; c < kCallers; ++c) {
    int64_t tokens = 1 + 37 * c; // 1 ... 260: decode-sized to multi-tile
    inputs.push_back(randomInput(tokens, hidden, 1000 + uint64_t(c)));
    outputs.push_back(layer.forward(inputs.back()));
    std::vector<int64_t> counts = layer.lastStats();
    for (size_t e = 0; e < counts.size(); ++e)
      wantCounts[e] += kRounds * counts[e];
    wantTokens += kRounds * tokens;
    // Without a capacity every token fills exactly k slots.
    if (!capacity)
      CHECK(sum(counts) == tokens * k);
  }

  REQUIRE(moert_layer_reset_stats(layer) == MOERT_OK);
  std::vector<int> identical(kCallers, 0), failed(kCallers, 0);
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c)
    callers.emplace_back([&, c] {
      const std::vector<float> &x = inputs[size_t(c)];
      std::vector<float> y(x.size());
      for (int round = 0; round < kRounds; ++round) {
        std::fill(y.begin(), y.end(), -1.0f);
        if (moert_layer_forward(layer, x.data(), int64_t(x.size()) / hidden,
                                y.data()) != MOERT_OK)
          ++failed[size_t(c)];
        else if (y == outputs[size_t(c)])
          ++identical[size_t(c)];
      }
    });
  for (std::thread &t : callers)
    t.join();
  CHECK(failed == std::vector<int>(kCallers, 0));
  CHECK(identical == std::vector<int>(kCallers, kRounds));

  int64_t tokens = 0;
  std::vector<int64_t> counts = layer.totalStats(&tokens);
  CHECK(tokens == wantTokens);
  CHECK(counts == wantCounts);
  if (!capacity)
    CHECK(sum(counts) == wantTokens * k);
}

TEST_CASE("determinism: the data flow of AVX-512 BF16 dot products gives the "
          "widened pair kernel's bits",
          "[determinism]") {
  // Both multiply the same bf16 values pair by pair, odd input first, each
  // product exact in f32: the layer through vdpbf16ps's data flow (bf16
  // activations in memory, each pair broadcast; the dot product emulated)
  // must give the bits of the layer that widens the weights instead.
  std::string family = GENERATE(from_range(families()));
  CAPTURE(family);
  ExampleLayer pairs(family, Variant::bf16Pairs);
  ExampleLayer dot(family, Variant::bf16DotEmulated);
  for (int64_t tokens : {int64_t(1), int64_t(7), int64_t(300)}) {
    CAPTURE(tokens);
    std::vector<float> x = randomInput(tokens, pairs.hidden(), 11);
    CHECK(firstDifference(dot.forward(x), pairs.forward(x), pairs.hidden()) ==
          "");
  }
}
