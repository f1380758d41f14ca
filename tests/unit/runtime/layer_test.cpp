//===- layer_test.cpp - The C API against fake layers (fake_layer.c) -----===//
//
// These test the runtime's own logic (loading, ABI checks, weight packing,
// descriptors, chunking, threads, statistics), not MoE arithmetic.
//
//===----------------------------------------------------------------------===//

#include "moert/moert.h"

#include "test_util.h"

#include <catch2/catch.hpp>

#include <cstring>
#include <thread>

#include <dlfcn.h>

using namespace moert::test;

namespace {
constexpr int64_t kHidden = 8, kExperts = 4, kWidth = 3;
const std::string kPrefix = "model.layers.0.mlp.";

/// Closes the layer at scope exit.
struct Layer {
  moert_layer *handle = nullptr;
  ~Layer() { moert_layer_close(handle); }
  operator moert_layer *() const { return handle; }
};

void open(Layer &layer, const char *path) {
  moert_status status = moert_layer_open(path, &layer.handle);
  INFO(moert_last_error());
  REQUIRE(status == MOERT_OK);
  REQUIRE(layer.handle);
}

/// What the fake layer recorded, read through its own exports.
class FakeCounters {
public:
  explicit FakeCounters(const char *path)
      : handle_(dlopen(path, RTLD_NOW | RTLD_NOLOAD)) {
    REQUIRE(handle_);
    reset();
  }
  ~FakeCounters() { dlclose(handle_); }
  long calls() const { return call("fake_calls"); }
  long maxTokens() const { return call("fake_max_tokens"); }
  long descriptorErrors() const { return call("fake_descriptor_errors"); }
  void reset() const {
    reinterpret_cast<void (*)()>(dlsym(handle_, "fake_reset"))();
  }

private:
  long call(const char *name) const {
    return reinterpret_cast<long (*)()>(dlsym(handle_, name))();
  }
  void *handle_;
};

// Weight values exact in F32, BF16 and F16.
float gateValue(int64_t i) { return 0.5f * float(i) - 3; }
float expertValue(int64_t e, int64_t i) {
  return 8.0f * float(e) + 0.25f * float(i);
}

Tensor encode(const std::string &name, std::vector<int64_t> shape,
              const std::string &dtype, const std::vector<float> &values) {
  std::string bytes;
  for (float v : values) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    if (dtype == "F32")
      bytes.append(reinterpret_cast<const char *>(&v), 4);
    else if (dtype == "BF16")
      bytes.append(reinterpret_cast<const char *>(&bits) + 2, 2);
    else {
      _Float16 h = _Float16(v);
      bytes.append(reinterpret_cast<const char *>(&h), 2);
    }
  }
  return {name, dtype, std::move(shape), bytes};
}

std::vector<Tensor> checkpoint(const std::string &prefix = kPrefix,
                               const std::string &gateDtype = "F32",
                               const std::string &expertDtype = "F32") {
  std::vector<float> gate;
  for (int64_t i = 0; i < kExperts * kHidden; ++i)
    gate.push_back(gateValue(i));
  std::vector<Tensor> tensors = {
      encode(prefix + "gate.weight", {kExperts, kHidden}, gateDtype, gate)};
  for (int64_t e = 0; e < kExperts; ++e) {
    std::vector<float> w;
    for (int64_t i = 0; i < kWidth * kHidden; ++i)
      w.push_back(expertValue(e, i));
    tensors.push_back(
        encode(prefix + "experts." + std::to_string(e) + ".w1.weight",
               {kWidth, kHidden}, e % 2 ? expertDtype : "F32", w));
  }
  tensors.push_back(f32Tensor(prefix + "unused.bias", {2}));
  return tensors;
}

std::vector<float> input(int64_t tokens, uint32_t seed = 1) {
  std::vector<float> x(size_t(tokens * kHidden));
  for (float &v : x) {
    seed = seed * 1664525u + 1013904223u;
    v = float(seed >> 8) / float(1 << 24) * 4 - 2;
  }
  return x;
}

/// The fake layer's arithmetic, as its header comment defines it.
std::vector<float> expected(const std::vector<float> &x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    int64_t h = int64_t(i % kHidden);
    y[i] = 2 * x[i] + gateValue(kHidden + h) + expertValue(3, 2 * kHidden + h);
  }
  return y;
}

std::vector<int64_t> expectedCounts(const std::vector<float> &x) {
  std::vector<int64_t> counts(kExperts, 0);
  for (size_t t = 0; t < x.size() / kHidden; ++t) {
    uint32_t bits;
    std::memcpy(&bits, &x[t * kHidden], 4);
    int e = (bits >> 13) & 3;
    counts[e] += 1;
    counts[(e + 1) % kExperts] += 1;
  }
  return counts;
}

std::vector<float> forward(moert_layer *layer, const std::vector<float> &x) {
  std::vector<float> y(x.size(), -1.0f);
  moert_status status = moert_layer_forward(
      layer, x.data(), int64_t(x.size()) / kHidden, y.data());
  INFO(moert_last_error());
  REQUIRE(status == MOERT_OK);
  return y;
}

void loadWeights(moert_layer *layer, const std::string &path,
                 const std::string &prefix = kPrefix) {
  moert_status status =
      moert_layer_load_weights(layer, path.c_str(), prefix.c_str());
  INFO(moert_last_error());
  REQUIRE(status == MOERT_OK);
}

bool sameBits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
} // namespace

TEST_CASE("layer: open and properties", "[layer]") {
  Layer layer;
  open(layer, MOERT_FAKE_LAYER);
  CHECK(moert_layer_hidden_size(layer) == kHidden);
  CHECK(moert_layer_num_experts(layer) == kExperts);
  CHECK(moert_layer_top_k(layer) == 2);
  CHECK(moert_layer_token_independent(layer) == 1);
  CHECK(std::string(moert_layer_family(layer)) == "fake");
  CHECK(std::string(moert_layer_device(layer)) == "cpu");
  CHECK_THAT(moert_layer_metadata(layer),
             Catch::Contains("\"moec_version\": \"test\""));
  CHECK(moert_abi_version() == MOERT_ABI_VERSION);

  // Properties of no layer are zero, not a crash.
  CHECK(moert_layer_hidden_size(nullptr) == 0);
  CHECK(moert_layer_metadata(nullptr) == nullptr);
  CHECK(moert_layer_device(nullptr) == nullptr);
  CHECK(moert_layer_workspace_bytes(nullptr, 10) == 0);
  moert_layer_close(nullptr);

  // A second layer from the same file shares the library: closing one keeps
  // the other working.
  TempDir dir;
  writeSafetensors(dir.path("w.safetensors"), checkpoint());
  {
    Layer other;
    open(other, MOERT_FAKE_LAYER);
  }
  loadWeights(layer, dir.path("w.safetensors"));
  std::vector<float> x = input(3);
  CHECK(forward(layer, x) == expected(x));
}

TEST_CASE("layer: files that are not usable layers", "[layer]") {
  TempDir dir;
  auto failure = [](const std::string &path) {
    moert_layer *layer = reinterpret_cast<moert_layer *>(0x1);
    moert_status status = moert_layer_open(path.c_str(), &layer);
    CHECK(layer == nullptr);
    return Failure{status, moert_last_error()};
  };

  Failure missing = failure(dir.path("none.so"));
  CHECK(missing.status == MOERT_ERROR_IO);
  CHECK(missing.message ==
        dir.path("none.so") + ": cannot open: No such file or directory");

  writeFile(dir.path("text.so"), "not an ELF file, just text\n");
  Failure text = failure(dir.path("text.so"));
  CHECK(text.status == MOERT_ERROR_ABI);
  CHECK_THAT(text.message, Catch::StartsWith(dir.path("text.so") +
                                             ": cannot load the layer: "));

  Failure runtime = failure(MOERT_LIBRARY);
  CHECK(runtime.status == MOERT_ERROR_ABI);
  CHECK(runtime.message ==
        std::string(MOERT_LIBRARY) +
            ": not a moec layer (missing symbol moec_abi_version)");

  Failure noForward = failure(MOERT_FAKE_LAYER_NO_FORWARD);
  CHECK(noForward.status == MOERT_ERROR_ABI);
  CHECK(noForward.message ==
        std::string(MOERT_FAKE_LAYER_NO_FORWARD) +
            ": not a moec layer (missing symbol moec_forward)");

  Failure abi2 = failure(MOERT_FAKE_LAYER_ABI2);
  CHECK(abi2.status == MOERT_ERROR_ABI);
  CHECK(abi2.message == std::string(MOERT_FAKE_LAYER_ABI2) +
                            ": layer ABI version 2, runtime supports 1 "
                            "(recompile with this moec)");

  Failure metadata = failure(MOERT_FAKE_LAYER_BAD_METADATA);
  CHECK(metadata.status == MOERT_ERROR_FORMAT);
  CHECK_THAT(metadata.message,
             Catch::StartsWith(std::string(MOERT_FAKE_LAYER_BAD_METADATA) +
                               ": invalid metadata: not valid JSON: "));

  // A cuda layer without a launch plan (cuda_layer_test.cpp has the rest).
  Failure cuda = failure(MOERT_FAKE_LAYER_CUDA);
  CHECK(cuda.status == MOERT_ERROR_FORMAT);
  CHECK(cuda.message == std::string(MOERT_FAKE_LAYER_CUDA) +
                            ": invalid metadata: missing field 'cuda' (a cuda "
                            "layer needs its launch plan)");

  moert_layer *none = reinterpret_cast<moert_layer *>(0x1);
  CHECK(moert_layer_open(nullptr, &none) == MOERT_ERROR_INVALID_ARGUMENT);
  CHECK(none == nullptr);
  CHECK(std::string(moert_last_error()) == "moert_layer_open: so_path is NULL");
  CHECK(moert_layer_open(MOERT_FAKE_LAYER, nullptr) ==
        MOERT_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("layer: a bare file name is not searched for", "[layer]") {
  // "libmoert.so" exists in the library path (next to the tests' RUNPATH),
  // not in the working directory.
  moert_layer *layer = nullptr;
  CHECK(moert_layer_open("libmoert.so", &layer) == MOERT_ERROR_IO);
  CHECK(std::string(moert_last_error()) ==
        "libmoert.so: cannot open: No such file or directory");
}

TEST_CASE("layer: weights from F32, BF16 and F16", "[layer]") {
  TempDir dir;
  Layer layer;
  open(layer, MOERT_FAKE_LAYER);
  std::vector<float> x = input(5);

  std::vector<float> y(x.size());
  CHECK(moert_layer_forward(layer, x.data(), 5, y.data()) == MOERT_ERROR_STATE);
  CHECK(std::string(moert_last_error()) ==
        std::string(MOERT_FAKE_LAYER) +
            ": forward called before the weights were loaded");

  for (const char *gate : {"F32", "BF16", "F16"})
    for (const char *experts : {"F32", "BF16", "F16"}) {
      std::string path = dir.path(std::string(gate) + experts + ".safetensors");
      writeSafetensors(path, checkpoint(kPrefix, gate, experts));
      loadWeights(layer, path);
      CHECK(forward(layer, x) == expected(x));
    }

  // An empty prefix (NULL) reads the tensors' names as they are.
  writeSafetensors(dir.path("bare.safetensors"), checkpoint(""));
  REQUIRE(moert_layer_load_weights(layer, dir.path("bare.safetensors").c_str(),
                                   nullptr) == MOERT_OK);
  CHECK(forward(layer, x) == expected(x));
}

TEST_CASE("layer: weights packed into bf16 panels", "[layer]") {
  // fake_layer_packed takes experts.{e}.w1.weight as bf16 [4, 2, 8, 2];
  // fake_layer_packed_k2 takes it (stacked, [4, 3, 8]) as bf16 panels of 2
  // with "k_pack": 2, [4, 2, 4, 4]. Both check that the padding row is
  // zero: each expert's tensor lands at its own offset.
  const char *library =
      GENERATE(MOERT_FAKE_LAYER_PACKED, MOERT_FAKE_LAYER_PACKED_K2);
  CAPTURE(library);
  TempDir dir;
  Layer layer;
  open(layer, library);
  FakeCounters fake(library);
  std::vector<float> x = input(50);
  for (const char *experts : {"F32", "BF16", "F16"}) {
    std::string path = dir.path(std::string(experts) + ".safetensors");
    writeSafetensors(path, checkpoint(kPrefix, "F32", experts));
    loadWeights(layer, path);
    CHECK(forward(layer, x) == expected(x));
  }
  CHECK(fake.calls() == 3);
  CHECK(fake.descriptorErrors() == 0);
}

TEST_CASE("layer: checkpoints that do not fit the layer", "[layer]") {
  TempDir dir;
  Layer layer;
  open(layer, MOERT_FAKE_LAYER);
  std::string good = dir.path("good.safetensors");
  writeSafetensors(good, checkpoint());
  loadWeights(layer, good);
  std::vector<float> x = input(4);
  std::vector<float> before = forward(layer, x);

  std::string path = dir.path("bad.safetensors");
  auto load = [&](std::vector<Tensor> tensors,
                  const std::string &prefix = kPrefix) {
    writeSafetensors(path, tensors);
    moert_status status =
        moert_layer_load_weights(layer, path.c_str(), prefix.c_str());
    std::string message = moert_last_error();
    return Failure{status, message.rfind(path + ": ", 0) == 0
                               ? message.substr(path.size() + 2)
                               : message};
  };

  std::vector<Tensor> tensors = checkpoint();
  tensors.erase(tensors.begin() + 3); // experts.2.w1.weight
  Failure missing = load(tensors);
  CHECK(missing.status == MOERT_ERROR_MISMATCH);
  CHECK(missing.message ==
        "missing tensor 'model.layers.0.mlp.experts.2.w1.weight'");

  Failure prefix = load(checkpoint(), "model.layers.1.mlp.");
  CHECK(prefix.message == "missing tensor 'model.layers.1.mlp.gate.weight' "
                          "(found 'gate.weight' under the prefix "
                          "'model.layers.0.mlp.')");
  std::vector<Tensor> twoLayers = checkpoint("a.");
  for (Tensor &t : checkpoint("b."))
    twoLayers.push_back(t);
  CHECK(load(twoLayers, "").message ==
        "missing tensor 'gate.weight' (found 'gate.weight' under the "
        "prefixes 'a.', 'b.')");

  tensors = checkpoint();
  tensors[4] = f32Tensor(kPrefix + "experts.3.w1.weight", {3, 7});
  Failure shape = load(tensors);
  CHECK(shape.status == MOERT_ERROR_MISMATCH);
  CHECK(shape.message == "tensor 'model.layers.0.mlp.experts.3.w1.weight' has "
                         "shape [3, 7], expected [3, 8]");

  tensors = checkpoint();
  tensors[0] = {kPrefix + "gate.weight", "I32", {4, 8}, std::string(128, '\0')};
  Failure dtype = load(tensors);
  CHECK(dtype.status == MOERT_ERROR_MISMATCH);
  CHECK(dtype.message == "tensor 'model.layers.0.mlp.gate.weight' has dtype "
                         "I32; weights must be F32, BF16 or F16");

  writeSafetensorsRaw(path, "{corrupt header}", "");
  CHECK(moert_layer_load_weights(layer, path.c_str(), "") ==
        MOERT_ERROR_FORMAT);
  CHECK_THAT(moert_last_error(),
             Catch::Contains("corrupt header: invalid JSON"));

  CHECK(moert_layer_load_weights(layer, nullptr, "") ==
        MOERT_ERROR_INVALID_ARGUMENT);
  CHECK(moert_layer_load_weights(nullptr, good.c_str(), "") ==
        MOERT_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(moert_last_error()) ==
        "moert_layer_load_weights: layer is NULL");

  // Every failure above left the weights loaded first in place.
  CHECK(sameBits(forward(layer, x), before));
}

TEST_CASE("layer: forward arguments", "[layer]") {
  TempDir dir;
  Layer layer;
  open(layer, MOERT_FAKE_LAYER);
  writeSafetensors(dir.path("w.safetensors"), checkpoint());
  loadWeights(layer, dir.path("w.safetensors"));
  FakeCounters fake(MOERT_FAKE_LAYER);

  CHECK(moert_layer_forward(layer, nullptr, 0, nullptr) == MOERT_OK);
  CHECK(fake.calls() == 0);
  float one[kHidden] = {};
  CHECK(moert_layer_forward(layer, one, -1, one) ==
        MOERT_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(moert_last_error(),
             Catch::EndsWith("forward: tokens is -1, must be >= 0"));
  CHECK(moert_layer_forward(layer, nullptr, 1, one) ==
        MOERT_ERROR_INVALID_ARGUMENT);
  CHECK(moert_layer_forward(nullptr, one, 1, one) ==
        MOERT_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(moert_last_error()) ==
        "moert_layer_forward: layer is NULL");

  CHECK(moert_layer_set_threads(layer, -1) == MOERT_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(moert_last_error()) ==
        "thread count -1 is out of range [0, 1024]");
  CHECK(moert_layer_set_threads(layer, 5000) == MOERT_ERROR_INVALID_ARGUMENT);
  CHECK(moert_layer_set_threads(layer, 0) == MOERT_OK); // hardware threads
  CHECK(fake.descriptorErrors() == 0);
}

TEST_CASE("layer: chunks bound the tokens per call", "[layer]") {
  TempDir dir;
  Layer layer;
  open(layer, MOERT_FAKE_LAYER);
  writeSafetensors(dir.path("w.safetensors"), checkpoint());
  loadWeights(layer, dir.path("w.safetensors"));
  FakeCounters fake(MOERT_FAKE_LAYER);

  std::vector<float> x = input(20000);
  CHECK(forward(layer, x) == expected(x));
  CHECK(fake.calls() == 3); // 8192 + 8192 + 3616
  CHECK(fake.maxTokens() == 8192);

  fake.reset();
  REQUIRE(moert_layer_set_threads(layer, 4) == MOERT_OK);
  std::vector<float> small = input(1000);
  CHECK(forward(layer, small) == expected(small));
  CHECK(fake.calls() == 4); // 250 tokens per thread
  CHECK(fake.maxTokens() == 250);

  fake.reset();
  std::vector<float> tiny = input(20);
  CHECK(forward(layer, tiny) == expected(tiny));
  CHECK(fake.calls() == 2); // chunks of at least 16 tokens
  CHECK(fake.descriptorErrors() == 0);
}

TEST_CASE("layer: any thread count gives the same bits", "[layer]") {
  TempDir dir;
  Layer layer;
  open(layer, MOERT_FAKE_LAYER);
  writeSafetensors(dir.path("w.safetensors"),
                   checkpoint(kPrefix, "BF16", "F16"));
  loadWeights(layer, dir.path("w.safetensors"));

  for (int64_t tokens : {1, 37, 1000, 20000}) {
    std::vector<float> x = input(tokens, uint32_t(tokens));
    REQUIRE(moert_layer_set_threads(layer, 1) == MOERT_OK);
    std::vector<float> reference = forward(layer, x);
    std::vector<int64_t> referenceCounts(kExperts);
    REQUIRE(moert_layer_last_stats(layer, referenceCounts.data(), nullptr) ==
            MOERT_OK);
    CHECK(referenceCounts == expectedCounts(x));
    for (int threads : {2, 3, 4, 7, 8, 0}) {
      REQUIRE(moert_layer_set_threads(layer, threads) == MOERT_OK);
      CHECK(sameBits(forward(layer, x), reference));
      std::vector<int64_t> counts(kExperts);
      int64_t seen = 0;
      REQUIRE(moert_layer_last_stats(layer, counts.data(), &seen) == MOERT_OK);
      CHECK(counts == referenceCounts);
      CHECK(seen == tokens);
    }
  }
}

TEST_CASE("layer: a token-dependent layer runs as one call", "[layer]") {
  TempDir dir;
  Layer layer;
  open(layer, MOERT_FAKE_LAYER_TOKEN_DEPENDENT);
  CHECK(moert_layer_token_independent(layer) == 0);
  writeSafetensors(dir.path("w.safetensors"), checkpoint());
  loadWeights(layer, dir.path("w.safetensors"));
  REQUIRE(moert_layer_set_threads(layer, 4) == MOERT_OK);
  FakeCounters fake(MOERT_FAKE_LAYER_TOKEN_DEPENDENT);

  std::vector<float> x = input(20000);
  CHECK(forward(layer, x) == expected(x));
  CHECK(fake.calls() == 1);
  CHECK(fake.maxTokens() == 20000);
  // Its scratch memory grows with the whole batch.
  CHECK(moert_layer_workspace_bytes(layer, 20000) >= 1000 + 100 * 20000);
}

TEST_CASE("layer: statistics", "[layer]") {
  TempDir dir;
  Layer layer;
  open(layer, MOERT_FAKE_LAYER);
  writeSafetensors(dir.path("w.safetensors"), checkpoint());
  loadWeights(layer, dir.path("w.safetensors"));

  std::vector<int64_t> counts(kExperts, -1);
  int64_t tokens = -1;
  REQUIRE(moert_layer_stats(layer, counts.data(), &tokens) == MOERT_OK);
  CHECK(counts == std::vector<int64_t>(kExperts, 0));
  CHECK(tokens == 0);

  std::vector<float> a = input(100, 7), b = input(30, 8);
  forward(layer, a);
  forward(layer, b);
  std::vector<int64_t> want = expectedCounts(a);
  for (int64_t e = 0; e < kExperts; ++e)
    want[size_t(e)] += expectedCounts(b)[size_t(e)];
  REQUIRE(moert_layer_stats(layer, counts.data(), &tokens) == MOERT_OK);
  CHECK(counts == want);
  CHECK(tokens == 130);
  REQUIRE(moert_layer_last_stats(layer, counts.data(), &tokens) == MOERT_OK);
  CHECK(counts == expectedCounts(b));
  CHECK(tokens == 30);
  CHECK(moert_layer_stats(layer, nullptr, nullptr) == MOERT_OK);

  REQUIRE(moert_layer_reset_stats(layer) == MOERT_OK);
  REQUIRE(moert_layer_stats(layer, counts.data(), &tokens) == MOERT_OK);
  CHECK(counts == std::vector<int64_t>(kExperts, 0));
  CHECK(tokens == 0);
  CHECK(moert_layer_stats(nullptr, counts.data(), &tokens) ==
        MOERT_ERROR_INVALID_ARGUMENT);
  CHECK(moert_layer_reset_stats(nullptr) == MOERT_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("layer: concurrent forward calls on one layer", "[layer]") {
  TempDir dir;
  Layer layer;
  open(layer, MOERT_FAKE_LAYER);
  writeSafetensors(dir.path("w.safetensors"), checkpoint());
  loadWeights(layer, dir.path("w.safetensors"));
  REQUIRE(moert_layer_set_threads(layer, 3) == MOERT_OK);

  constexpr int kCallers = 8, kRounds = 20;
  std::vector<std::vector<float>> inputs;
  std::vector<int64_t> want(kExperts, 0);
  int64_t wantTokens = 0;
  for (int c = 0; c < kCallers; ++c) {
    inputs.push_back(input(100 + 50 * c, uint32_t(c + 1)));
    for (int64_t e = 0; e < kExperts; ++e)
      want[size_t(e)] += kRounds * expectedCounts(inputs.back())[size_t(e)];
    wantTokens += kRounds * (100 + 50 * c);
  }

  std::vector<int> correct(kCallers, 0);
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c)
    callers.emplace_back([&, c] {
      const std::vector<float> &x = inputs[size_t(c)];
      std::vector<float> want = expected(x), y(x.size());
      for (int round = 0; round < kRounds; ++round) {
        std::fill(y.begin(), y.end(), 0.0f);
        if (moert_layer_forward(layer, x.data(), int64_t(x.size()) / kHidden,
                                y.data()) == MOERT_OK &&
            y == want)
          ++correct[size_t(c)];
      }
    });
  for (std::thread &t : callers)
    t.join();
  CHECK(correct == std::vector<int>(kCallers, kRounds));

  std::vector<int64_t> counts(kExperts);
  int64_t tokens = 0;
  REQUIRE(moert_layer_stats(layer, counts.data(), &tokens) == MOERT_OK);
  CHECK(counts == want);
  CHECK(tokens == wantTokens);
}

TEST_CASE("layer: workspace bound", "[layer]") {
  Layer layer;
  open(layer, MOERT_FAKE_LAYER);
  // The fake metadata: 1000 bytes fixed, 100 per token.
  CHECK(moert_layer_workspace_bytes(layer, 0) == 0);
  size_t one = moert_layer_workspace_bytes(layer, 100);
  CHECK(one >= 1000 + 100 * 100);
  CHECK(one < 1000 + 100 * 100 + 4096);
  // One thread: chunks of 8192 tokens run one at a time.
  size_t big = moert_layer_workspace_bytes(layer, 100000);
  CHECK(big >= 1000 + 100 * 8192);
  CHECK(big < 1000 + 100 * 8192 + 65536);
  // Four threads: four chunks at once.
  REQUIRE(moert_layer_set_threads(layer, 4) == MOERT_OK);
  CHECK(moert_layer_workspace_bytes(layer, 100000) >= 4 * (1000 + 100 * 8192));
}

TEST_CASE("errors: statuses and thread-local messages", "[layer]") {
  CHECK(std::string(moert_status_string(MOERT_OK)) == "ok");
  CHECK(std::string(moert_status_string(MOERT_ERROR_ABI)) == "ABI error");
  CHECK(std::string(moert_status_string(MOERT_ERROR_NO_DEVICE)) ==
        "no CUDA device");
  CHECK(std::string(moert_status_string(moert_status(99))) == "unknown status");

  moert_layer *layer = nullptr;
  REQUIRE(moert_layer_open("/nonexistent/a.so", &layer) == MOERT_ERROR_IO);
  std::string mine = moert_last_error();
  std::thread other([] {
    CHECK(std::string(moert_last_error()).empty());
    moert_layer *l = nullptr;
    CHECK(moert_layer_open("/nonexistent/b.so", &l) == MOERT_ERROR_IO);
  });
  other.join();
  CHECK(std::string(moert_last_error()) == mine);
  // Success leaves the last message alone.
  CHECK(moert_layer_reset_stats(nullptr) == MOERT_ERROR_INVALID_ARGUMENT);
  Layer ok;
  open(ok, MOERT_FAKE_LAYER);
  CHECK(std::string(moert_last_error()) ==
        "moert_layer_reset_stats: layer is NULL");
}
