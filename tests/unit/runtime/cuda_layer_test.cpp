//===- cuda_layer_test.cpp - Running cuda layers on the fake driver ------===//
//
// The executor of cuda layers (cuda_layer.h) through the C API, without a
// GPU: fake_libcuda.c stands in for the driver ("device" memory is host
// memory, kernels do nothing, each launch is logged with its grid, block
// and parameters), so the tests can check what the runtime uploads, which
// launches it makes in which order with which memref descriptors, and that
// the output and statistics are what the device's result buffers held.
//
// [cuda-exec]: the hand-written fake_cuda_layer.c (open-time checks,
// corrupt plans and images, errors, threads).
// [cuda-layer]: the examples compiled by moec --target cuda at test time
// (the ctest fixture "runtime: compile cuda layers"), with the expected
// launches derived here from the layers' configs.
//
//===----------------------------------------------------------------------===//

#include "moert/moert.h"
#include "runtime/src/convert.h"
#include "runtime/src/cuda_driver.h"
#include "runtime/src/safetensors.h"

#include "test_util.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace moert;
using namespace moert::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {
/// Closes the layer at scope exit.
struct Layer {
  moert_layer *handle = nullptr;
  ~Layer() { moert_layer_close(handle); }
  operator moert_layer *() const { return handle; }
};

void open(Layer &layer, const std::string &path) {
  moert_status status = moert_layer_open(path.c_str(), &layer.handle);
  INFO(moert_last_error());
  REQUIRE(status == MOERT_OK);
}

Failure openFailure(const std::string &path) {
  moert_layer *layer = reinterpret_cast<moert_layer *>(0x1);
  moert_status status = moert_layer_open(path.c_str(), &layer);
  CHECK(layer == nullptr);
  return {status, status == MOERT_OK ? "(no error)" : moert_last_error()};
}

void loadWeights(moert_layer *layer, const std::string &path,
                 const std::string &prefix) {
  moert_status status =
      moert_layer_load_weights(layer, path.c_str(), prefix.c_str());
  INFO(moert_last_error());
  REQUIRE(status == MOERT_OK);
}

Failure loadFailure(moert_layer *layer, const std::string &path,
                    const std::string &prefix) {
  moert_status status =
      moert_layer_load_weights(layer, path.c_str(), prefix.c_str());
  return {status, status == MOERT_OK ? "(no error)" : moert_last_error()};
}

std::vector<float> input(size_t count, uint32_t seed = 1) {
  std::vector<float> x(count);
  for (float &v : x) {
    seed = seed * 1664525u + 1013904223u;
    v = float(seed >> 8) / float(1 << 24) * 4 - 2;
  }
  return x;
}

std::vector<float> forward(moert_layer *layer, const std::vector<float> &x,
                           int64_t tokens) {
  std::vector<float> y(x.size(), NAN);
  moert_status status = moert_layer_forward(layer, x.data(), tokens, y.data());
  INFO(moert_last_error());
  REQUIRE(status == MOERT_OK);
  return y;
}

std::vector<int64_t> lastStats(moert_layer *layer, int64_t *tokens) {
  std::vector<int64_t> counts(size_t(moert_layer_num_experts(layer)), -1);
  REQUIRE(moert_layer_last_stats(layer, counts.data(), tokens) == MOERT_OK);
  return counts;
}

/// `bytes` bytes of fake device memory (host memory) at `ptr`.
std::string deviceBytes(int64_t ptr, size_t bytes) {
  return std::string(reinterpret_cast<const char *>(uintptr_t(ptr)), bytes);
}

// --- The fake driver's launch log -----------------------------------------

/// One launch: "NAME GX GY GZ BX BY BZ N P0 ... P(N-1)".
struct Launch {
  std::string kernel;
  std::array<uint64_t, 3> grid{}, block{};
  std::vector<int64_t> params;
};

std::vector<Launch> readLaunches(const std::string &path) {
  std::vector<Launch> launches;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    Launch l;
    size_t count = 0;
    fields >> l.kernel >> l.grid[0] >> l.grid[1] >> l.grid[2] >> l.block[0] >>
        l.block[1] >> l.block[2] >> count;
    l.params.resize(count);
    for (int64_t &p : l.params)
      fields >> p;
    INFO(line);
    REQUIRE(fields);
    launches.push_back(std::move(l));
  }
  return launches;
}

/// A memref descriptor as kernel parameters: allocated, aligned, offset,
/// sizes[rank], strides[rank].
struct Descriptor {
  int64_t allocated = 0, aligned = 0, offset = -1;
  std::vector<int64_t> sizes, strides;
};

/// The launch's parameters read as descriptors of the given ranks; the
/// count must be exactly theirs.
std::vector<Descriptor> decode(const Launch &launch,
                               const std::vector<size_t> &ranks) {
  size_t want = 0;
  for (size_t rank : ranks)
    want += 3 + 2 * rank;
  INFO(launch.kernel);
  REQUIRE(launch.params.size() == want);
  std::vector<Descriptor> descriptors;
  size_t at = 0;
  for (size_t rank : ranks) {
    Descriptor d;
    d.allocated = launch.params[at++];
    d.aligned = launch.params[at++];
    d.offset = launch.params[at++];
    for (size_t i = 0; i < rank; ++i)
      d.sizes.push_back(launch.params[at++]);
    for (size_t i = 0; i < rank; ++i)
      d.strides.push_back(launch.params[at++]);
    descriptors.push_back(std::move(d));
  }
  return descriptors;
}

std::vector<int64_t> rowMajor(const std::vector<int64_t> &sizes) {
  std::vector<int64_t> strides(sizes.size());
  int64_t stride = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= sizes[i];
  }
  return strides;
}

/// What a launch should be: kernel, grid, block and its arguments' sizes.
struct Expected {
  std::string kernel;
  std::array<uint64_t, 3> grid, block;
  std::vector<std::vector<int64_t>> args;
};

/// Checks the launches against `expected` and returns their descriptors.
std::vector<std::vector<Descriptor>>
checkLaunches(const std::vector<Launch> &launches,
              const std::vector<Expected> &expected) {
  std::vector<std::string> names, wantNames;
  for (const Launch &l : launches)
    names.push_back(l.kernel);
  for (const Expected &e : expected)
    wantNames.push_back(e.kernel);
  REQUIRE(names == wantNames); // plan order
  std::vector<std::vector<Descriptor>> all;
  for (size_t i = 0; i < launches.size(); ++i) {
    const Launch &l = launches[i];
    const Expected &e = expected[i];
    INFO("launch " << i << ": " << e.kernel);
    CHECK(l.grid == e.grid);
    CHECK(l.block == e.block);
    std::vector<size_t> ranks;
    for (const std::vector<int64_t> &a : e.args)
      ranks.push_back(a.size());
    std::vector<Descriptor> ds = decode(l, ranks);
    for (size_t a = 0; a < ds.size(); ++a) {
      INFO("argument " << a);
      CHECK(ds[a].allocated == ds[a].aligned);
      CHECK(ds[a].aligned != 0);
      CHECK(ds[a].aligned % 256 == 0);
      CHECK(ds[a].offset == 0);
      CHECK(ds[a].sizes == e.args[a]);
      CHECK(ds[a].strides == rowMajor(e.args[a]));
    }
    all.push_back(std::move(ds));
  }
  return all;
}

// --- The fake cuda layer (fake_cuda_layer.c) --------------------------------

constexpr int64_t kHidden = 8, kExperts = 4, kWidth = 3;
const std::string kPrefix = "model.layers.0.mlp.";

/// Gate [4, 8] as F32 and experts.{e}.w1.weight [3, 8] as `expertDtype`;
/// `base` shifts every value.
std::vector<Tensor> checkpoint(const std::string &expertDtype = "BF16",
                               float base = 0) {
  std::vector<float> gate(kExperts * kHidden);
  for (size_t i = 0; i < gate.size(); ++i)
    gate[i] = base + 0.5f * float(i) - 3;
  std::vector<Tensor> tensors = {
      {kPrefix + "gate.weight", "F32", {kExperts, kHidden}, bytesOf(gate)}};
  for (int64_t e = 0; e < kExperts; ++e) {
    std::vector<float> w(kWidth * kHidden);
    for (size_t i = 0; i < w.size(); ++i)
      w[i] = base + 8.0f * float(e) + 0.25f * float(i); // exact in bf16
    Tensor t{kPrefix + "experts." + std::to_string(e) + ".w1.weight",
             expertDtype,
             {kWidth, kHidden},
             ""};
    for (float v : w) {
      if (expertDtype == "F32") {
        t.bytes.append(reinterpret_cast<const char *>(&v), 4);
      } else {
        uint16_t half = expertDtype == "BF16" ? f32ToBF16(v) : f32ToF16(v);
        t.bytes.append(reinterpret_cast<const char *>(&half), 2);
      }
    }
    tensors.push_back(std::move(t));
  }
  return tensors;
}

/// The weights as the device should hold them: gate f32, w1 bf16 stacked.
std::string deviceGate(float base = 0) {
  std::vector<float> gate(kExperts * kHidden);
  for (size_t i = 0; i < gate.size(); ++i)
    gate[i] = base + 0.5f * float(i) - 3;
  return bytesOf(gate);
}
std::string deviceW1(float base = 0) {
  std::vector<uint16_t> w;
  for (int64_t e = 0; e < kExperts; ++e)
    for (int64_t i = 0; i < kWidth * kHidden; ++i)
      w.push_back(f32ToBF16(base + 8.0f * float(e) + 0.25f * float(i)));
  return bytesOf(w);
}

/// The fake layer's launches for T (its header comment).
std::vector<Expected> fakeLaunches(int64_t t) {
  uint64_t T = uint64_t(t);
  return {{"route",
           {(T + 127) / 128, 1, 1},
           {128, 1, 1},
           {{t, kHidden}, {kExperts, kHidden}, {t, 4}}},
          {"expert",
           {(T + 15) / 16, 2, 1},
           {32, 1, 1},
           {{t, kHidden}, {t, 4}, {kExperts, kWidth, kHidden}, {t, kHidden}}},
          {"count", {1, 1, 1}, {1, 1, 1}, {{kExperts}}}};
}

/// The running statistics hold `total` tokens and `totalCounts`; then a
/// call with no tokens launches nothing (no line in `launchLog`) and
/// records zero statistics.
void checkTotalsThenNoTokens(moert_layer *layer, int64_t total,
                             const std::vector<int64_t> &totalCounts,
                             const std::string &launchLog) {
  int64_t tokens = 0;
  std::vector<int64_t> counts(totalCounts.size());
  REQUIRE(moert_layer_stats(layer, counts.data(), &tokens) == MOERT_OK);
  CHECK(tokens == total);
  CHECK(counts == totalCounts);
  std::remove(launchLog.c_str());
  CHECK(moert_layer_forward(layer, nullptr, 0, nullptr) == MOERT_OK);
  CHECK(!fileExists(launchLog));
  int64_t none = -1;
  CHECK(lastStats(layer, &none) == std::vector<int64_t>(totalCounts.size(), 0));
  CHECK(none == 0);
}

int counter(const char *name) {
  int value = fakeDriverCounter(name);
  REQUIRE(value >= 0);
  return value;
}

// --- Layers compiled by moec ------------------------------------------------

/// A family's example compiled with --target cuda (and --gpu-mma `mma`)
/// into MOERT_CUDA_LAYER_DIR, reused while newer than moec unless `force`.
/// "" when moec cannot build cuda layers here (no CUDA toolkit): `*why`
/// says.
std::string cudaLayer(const std::string &family, bool force, std::string *why,
                      const std::string &mma = "sync") {
  std::string dir = MOERT_CUDA_LAYER_DIR;
  std::string out =
      dir + "/" + family + (mma == "sync" ? "" : "." + mma) + ".so";
  std::error_code ec;
  auto moecTime = fs::last_write_time(MOEC, ec);
  if (ec)
    FAIL("moec is not built (" << MOEC << "); the [cuda-layer] tests need it");
  if (!force && fs::exists(out) && fs::last_write_time(out) >= moecTime)
    return out;
  fs::create_directories(dir);
  std::string temp = out + ".tmp." + std::to_string(::getpid());
  std::string log = temp + ".log";
  std::string command = std::string(MOEC) + " compile " + MOE_SOURCE_DIR +
                        "/examples/" + family + "/config.json --target cuda" +
                        " --gpu-mma " + mma + " -o " + temp + " 2>" + log;
  int raw = std::system(command.c_str());
  std::string errors = readFile(log);
  std::remove(log.c_str());
  int status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  if (status != 0 && errors.find("no CUDA toolkit") != std::string::npos) {
    *why = errors;
    std::remove(temp.c_str());
    return "";
  }
  INFO("moec compile --target cuda " << family << ": " << errors);
  REQUIRE(status == 0);
  fs::rename(temp, out); // atomic: concurrent tests never see half a file
  return out;
}

const char *const kCompiledFamilies[] = {"mixtral", "qwen2_moe"};

std::string examplePath(const std::string &family, const std::string &name) {
  return std::string(MOE_SOURCE_DIR) + "/examples/" + family + "/" + name;
}

std::string examplePrefix(const std::string &family) {
  std::string prefix = readFile(examplePath(family, "prefix.txt"));
  while (!prefix.empty() && std::isspace((unsigned char)prefix.back()))
    prefix.pop_back();
  return prefix;
}

/// The sizes the launches depend on, from the example's config.
struct Shape {
  int64_t hidden, experts, k, width, shared = 0; // shared: 0 if none
};

Shape shapeOf(const std::string &family) {
  json c = json::parse(readFile(examplePath(family, "config.json")));
  auto at = [&](const char *key) { return c.at(key).get<int64_t>(); };
  if (family == "mixtral")
    return {at("hidden_size"), at("num_local_experts"),
            at("num_experts_per_tok"), at("intermediate_size"), 0};
  return {at("hidden_size"), at("num_experts"), at("num_experts_per_tok"),
          at("moe_intermediate_size"), at("shared_expert_intermediate_size")};
}

/// The launches of the GPU pipeline (docs/gpu.md) for T, from the formulas:
/// the router's logits a block per 64 x 64 tile, softmax and top-k in one
/// kernel a thread per token, in blocks of 128; the combine one per output element (a block
/// per token and 128 columns); the
/// dispatch and the statistics over chunks of 256 slots (a thread each, in
/// blocks of 128), the dispatch's ranks in one block of 256; its rows
/// R_max = floor((T k + E (tile - 1)) / tile) tile with tile 128; FFN warps
/// of 16 rows by 32 columns.
std::vector<Expected> pipelineLaunches(const Shape &s, int64_t t) {
  const int64_t tile = 128, H = s.hidden, E = s.experts, k = s.k, I = s.width,
                S = s.shared;
  auto ceilDiv = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  int64_t rows = (t * k + E * (tile - 1)) / tile * tile;
  int64_t padded = ceilDiv(t, 16) * 16;
  uint64_t tokenBlocks = uint64_t(ceilDiv(t, 128));
  int64_t chunks = ceilDiv(t * k, 256);
  uint64_t chunkBlocks = uint64_t(ceilDiv(chunks, 128));
  std::vector<Expected> launches = {
      {"router_logits",
       {uint64_t(ceilDiv(t, 64)), uint64_t(ceilDiv(E, 64)), 1},
       {256, 1, 1},
       {{t, H}, {E, H}, {t, E}}},
      {"router_softmax_topk",
       {tokenBlocks, 1, 1},
       {128, 1, 1},
       {{t, E}, {t, k}, {t, k}}},
      {"dispatch_histogram",
       {chunkBlocks, 1, 1},
       {128, 1, 1},
       {{t, k}, {chunks, E}}},
      {"dispatch_offsets",
       {1, 1, 1},
       {256, 1, 1},
       {{chunks, E}, {E + 1}, {rows}, {rows / tile}}},
      {"dispatch_scatter",
       {chunkBlocks, 1, 1},
       {128, 1, 1},
       {{t, k}, {chunks, E}, {E + 1}, {rows}, {t, k}}},
      {"expert_ffn_gate_up",
       {uint64_t(rows / 16), uint64_t(ceilDiv(I, 32)), 1},
       {32, 1, 1},
       {{t, H}, {rows}, {rows / tile}, {E, I, H}, {E, I, H}, {rows, I}}},
      {"expert_ffn_down",
       {uint64_t(rows / 16), uint64_t(ceilDiv(H, 32)), 1},
       {32, 1, 1},
       {{rows, I},
        {t, H},
        {rows},
        {rows / tile},
        {E, H, I},
        {t, k},
        {rows, H}}}};
  if (S) {
    launches.push_back({"shared_ffn_gate_up",
                        {uint64_t(padded / 16), uint64_t(ceilDiv(S, 32)), 1},
                        {32, 1, 1},
                        {{t, H}, {S, H}, {S, H}, {padded, S}}});
    launches.push_back({"shared_ffn_down",
                        {uint64_t(padded / 16), uint64_t(ceilDiv(H, 32)), 1},
                        {32, 1, 1},
                        {{padded, S}, {t, H}, {H, S}, {1, H}, {padded, H}}});
    launches.push_back({"combine",
                        {uint64_t(t), uint64_t(ceilDiv(H, 128)), 1},
                        {128, 1, 1},
                        {{rows, H}, {t, k}, {padded, H}, {t, H}}});
  } else {
    launches.push_back({"combine",
                        {uint64_t(t), uint64_t(ceilDiv(H, 128)), 1},
                        {128, 1, 1},
                        {{rows, H}, {t, k}, {t, H}}});
  }
  launches.push_back(
      {"stats_histogram", {chunkBlocks, 1, 1}, {128, 1, 1}, {{t, k}, {chunks, E}}});
  launches.push_back({"stats_totals",
                      {uint64_t(ceilDiv(E, 128)), 1, 1},
                      {128, 1, 1},
                      {{chunks, E}, {E}}});
  return launches;
}

/// A checkpoint tensor converted to `format`, as the device should hold it.
std::string converted(const SafetensorsFile &file, const std::string &name,
                      FloatFormat format) {
  const TensorInfo *t = file.find(name);
  REQUIRE(t);
  REQUIRE((t->dtype == DType::F32 || t->dtype == DType::BF16 ||
           t->dtype == DType::F16));
  FloatFormat from = t->dtype == DType::F32    ? FloatFormat::F32
                     : t->dtype == DType::BF16 ? FloatFormat::BF16
                                               : FloatFormat::F16;
  std::string out(t->numElements() * formatSize(format), '\0');
  convertFloats(from, file.data(*t), format, out.data(), t->numElements());
  return out;
}

/// What the device holds for the bf16 weight argument `arg` (its metadata
/// entry): the checkpoint tensor, or the experts' tensors stacked, as bf16.
std::string deviceWeight(const SafetensorsFile &checkpoint,
                         const std::string &prefix, const json &arg,
                         int64_t experts) {
  REQUIRE(arg["dtype"] == "bf16");
  std::string name = arg["name"];
  size_t at = name.find("{e}");
  if (at == std::string::npos)
    return converted(checkpoint, prefix + name, FloatFormat::BF16);
  std::string bytes;
  for (int64_t e = 0; e < experts; ++e) {
    std::string expert = name;
    expert.replace(at, 3, std::to_string(e));
    bytes += converted(checkpoint, prefix + expert, FloatFormat::BF16);
  }
  return bytes;
}

/// A family's compiled example run on a fake H200 that logs its launches,
/// with the example's checkpoint at hand.
struct FakeH200Example {
  explicit FakeH200Example(const std::string &family)
      : shape(shapeOf(family)),
        weights(examplePath(family, "model.safetensors")),
        prefix(examplePrefix(family)),
        checkpoint(SafetensorsFile::open(weights)) {}
  std::string launchLog() const { return dir.path("launches.log"); }

  Shape shape;
  TempDir dir;
  FakeDriver fake{"h200"};
  ScopedEnv log{"FAKE_CUDA_LAUNCH_LOG", dir.path("launches.log")};
  std::string weights, prefix;
  SafetensorsFile checkpoint;
};

size_t typeSize(const std::string &dtype) {
  return dtype == "i64"                       ? 8
         : dtype == "i8"                      ? 1
         : (dtype == "f32" || dtype == "i32") ? 4
                                              : 2;
}
} // namespace

// --- The fake cuda layer -----------------------------------------------------

TEST_CASE("cuda exec: opening a cuda layer needs no GPU", "[cuda-exec]") {
  ScopedEnv noDriver("MOERT_LIBCUDA", "/nonexistent/libcuda.so.1");
  Layer layer;
  open(layer, MOERT_FAKE_CUDA_LAYER);
  CHECK(std::string(moert_layer_device(layer)) == "cuda");
  CHECK(moert_layer_hidden_size(layer) == kHidden);
  CHECK(moert_layer_num_experts(layer) == kExperts);
  CHECK(moert_layer_set_threads(layer, 3) == MOERT_OK); // accepted

  // Device memory for T: x [7, 8] f32, [7, 4] f32, [7, 8] f32, [4] i64,
  // each on 256 bytes.
  CHECK(moert_layer_workspace_bytes(layer, 0) == 0);
  CHECK(moert_layer_workspace_bytes(layer, 7) == 4 * 256);
  CHECK(moert_layer_workspace_bytes(layer, 300) ==
        9728 + 4864 + 9728 + 256); // 9600, 4800, 9600, 32 rounded up

  std::vector<float> x = input(5 * kHidden), y(x.size());
  CHECK(moert_layer_forward(layer, x.data(), 5, y.data()) == MOERT_ERROR_STATE);
  CHECK(std::string(moert_last_error()) ==
        std::string(MOERT_FAKE_CUDA_LAYER) +
            ": forward called before the weights were loaded");

  // The checkpoint is checked before the driver is loaded...
  TempDir dir;
  std::vector<Tensor> tensors = checkpoint();
  tensors.erase(tensors.begin() + 2);
  writeSafetensors(dir.path("bad.safetensors"), tensors);
  Failure bad = loadFailure(layer, dir.path("bad.safetensors"), kPrefix);
  CHECK(bad.status == MOERT_ERROR_MISMATCH);
  CHECK(bad.message == dir.path("bad.safetensors") +
                           ": missing tensor "
                           "'model.layers.0.mlp.experts.1.w1.weight'");
  // ... which a good one then needs.
  writeSafetensors(dir.path("w.safetensors"), checkpoint());
  Failure driver = loadFailure(layer, dir.path("w.safetensors"), kPrefix);
  CHECK(driver.status == MOERT_ERROR_NO_DEVICE);
  CHECK(driver.message ==
        "CUDA driver not found (/nonexistent/libcuda.so.1: cannot open shared "
        "object file: No such file or directory); --device cuda needs an "
        "NVIDIA driver");
  CHECK(moert_layer_forward(layer, x.data(), 5, y.data()) == MOERT_ERROR_STATE);
}

TEST_CASE("cuda exec: corrupt plans and images fail to open", "[cuda-exec]") {
  const std::string so = MOERT_FAKE_CUDA_LAYER;
  // The default plan, with one field replaced.
  std::string plan =
      R"({"arch": "sm_90a", "image": "fatbin", "buffers": [
            {"dtype": "f32", "shape": ["T", 4]}, {"dtype": "f32", "shape": ["T", 8]},
            {"dtype": "i64", "shape": [4]}],
          "steps": [
            {"launch": "route", "grid": [["ceildivui", "T", 128], 1, 1],
             "block": [128, 1, 1], "args": [{"arg": 0}, {"arg": 1}, {"buffer": 0}]},
            {"launch": "expert", "grid": [["ceildivui", "T", 16], 2, 1],
             "block": [32, 1, 1],
             "args": [{"arg": 0}, {"buffer": 0}, {"arg": 2}, {"buffer": 1}]},
            {"free": 0},
            {"launch": "count", "grid": [1, 1, 1], "block": [1, 1, 1],
             "args": [{"buffer": 2}]}],
          "results": [{"buffer": 1}, {"buffer": 2}]})";
  auto failure = [&](const std::string &pointer, const json &value) {
    json p = json::parse(plan);
    p[json::json_pointer(pointer)] = value;
    ScopedEnv env("FAKE_CUDA_PLAN", p.dump());
    return openFailure(so);
  };
  {
    ScopedEnv env("FAKE_CUDA_PLAN", plan);
    Layer layer;
    open(layer, so); // the plan above is valid
  }
  Failure ref = failure("/steps/1/args/1", json::parse(R"({"buffer": 12})"));
  CHECK(ref.status == MOERT_ERROR_FORMAT);
  CHECK(ref.message ==
        so + ": invalid metadata: cuda.steps[1].args[1] refers to buffer 12 "
             "of 3");
  CHECK(failure("/steps/0/launch", "").message ==
        so + ": invalid metadata: field 'cuda.steps[0].launch' must be a "
             "non-empty kernel name");
  CHECK(failure("/steps/1/grid/0/0", "ceildiv").message ==
        so + ": invalid metadata: 'cuda.steps[1].grid[0][0]' is \"ceildiv\", "
             "expected one of addi, subi, muli, divui, ceildivui, remui, "
             "minui, maxui");
  CHECK(failure("/results/0", json::parse(R"({"buffer": 2})")).message ==
        so + ": invalid metadata: cuda.results[0] is buffer 2, i64 with 1 "
             "dimension; the output must be f32 with 2 dimensions");
  CHECK(failure("/arch", "sm_90x").message ==
        so + ": invalid metadata: field 'cuda.arch' is 'sm_90x', expected a "
             "CUDA architecture such as sm_90a");
  {
    ScopedEnv env("FAKE_CUDA_PLAN", "none");
    CHECK(openFailure(so).message == so + ": invalid metadata: missing field "
                                          "'cuda' (a cuda layer needs its "
                                          "launch plan)");
  }
  // fake_layer.c's cuda variant has moec_forward but no plan.
  CHECK(openFailure(MOERT_FAKE_LAYER_CUDA).message ==
        std::string(MOERT_FAKE_LAYER_CUDA) +
            ": invalid metadata: missing field 'cuda' (a cuda layer needs its "
            "launch plan)");

  auto image = [&](const char *variant) {
    ScopedEnv env("FAKE_CUDA_IMAGE", variant);
    return openFailure(so);
  };
  Failure null = image("null");
  CHECK(null.status == MOERT_ERROR_ABI);
  CHECK(null.message == so + ": moec_cuda_image returned no image");
  CHECK(image("elf").message == so + ": its CUDA image is not a fatbin (magic "
                                     "0x464c457f, expected 0xba55ed50)");
  CHECK(image("small").message ==
        so + ": its CUDA image is 8 bytes, too small for a fatbin");
  CHECK(image("truncated").message ==
        so + ": its CUDA image's fatbin header claims 16 + 16 bytes, the "
             "image has 24");
  CHECK(image("misaligned").message ==
        so + ": its CUDA image is not 16-byte aligned");
  // A cpu layer's library is not asked for an image.
  CHECK(openFailure(MOERT_FAKE_LAYER_NO_FORWARD).message ==
        std::string(MOERT_FAKE_LAYER_NO_FORWARD) +
            ": not a moec layer (missing symbol moec_forward)");
}

TEST_CASE("cuda exec: weights, launches and results on a fake H200",
          "[cuda-exec]") {
  TempDir dir;
  FakeDriver fake("h200");
  ScopedEnv log("FAKE_CUDA_LAUNCH_LOG", dir.path("launches.log"));
  int loadsBefore = fakeDriverCounter("fake_module_loads");
  int lookupsBefore = fakeDriverCounter("fake_kernel_lookups");
  {
    Layer layer;
    open(layer, MOERT_FAKE_CUDA_LAYER);
    writeSafetensors(dir.path("w.safetensors"), checkpoint("F16"));
    loadWeights(layer, dir.path("w.safetensors"), kPrefix);
    CHECK(!fileExists(dir.path("launches.log"))); // loading launches nothing
    // One module, each kernel looked up once (the driver was not loaded
    // before in this process if the counters read -1).
    CHECK(counter("fake_module_loads") - std::max(loadsBefore, 0) == 1);
    CHECK(counter("fake_kernel_lookups") - std::max(lookupsBefore, 0) == 3);
    REQUIRE(moert_layer_set_threads(layer, 4) == MOERT_OK); // no effect

    int64_t total = 0;
    std::vector<int64_t> totalCounts(kExperts, 0);
    // T grows or repeats: each call's statistics buffer then still holds
    // the fake's pattern (small counts), not an earlier call's x.
    for (int64_t t : {1, 7, 300, 300}) {
      INFO("T = " << t);
      std::remove(dir.path("launches.log").c_str());
      std::vector<float> x = input(size_t(t * kHidden), uint32_t(t));
      std::vector<float> y = forward(layer, x, t);
      std::vector<std::vector<Descriptor>> ds = checkLaunches(
          readLaunches(dir.path("launches.log")), fakeLaunches(t));
      // x, the weights and the buffers as the plan wires them.
      CHECK(ds[0][0].aligned == ds[1][0].aligned);
      CHECK(deviceBytes(ds[0][0].aligned, x.size() * 4) == bytesOf(x));
      CHECK(deviceBytes(ds[0][1].aligned, 128) == deviceGate());
      CHECK(deviceBytes(ds[1][2].aligned, 192) == deviceW1());
      CHECK(ds[0][2].aligned == ds[1][1].aligned); // buffer 0
      std::set<int64_t> distinct = {ds[0][0].aligned, ds[0][1].aligned,
                                    ds[0][2].aligned, ds[1][2].aligned,
                                    ds[1][3].aligned, ds[2][0].aligned};
      CHECK(distinct.size() == 6);
      // y and the statistics are what the result buffers held.
      CHECK(bytesOf(y) == deviceBytes(ds[1][3].aligned, y.size() * 4));
      int64_t tokens = -1;
      std::vector<int64_t> counts = lastStats(layer, &tokens);
      CHECK(tokens == t);
      CHECK(bytesOf(counts) == deviceBytes(ds[2][0].aligned, kExperts * 8));
      for (size_t e = 0; e < counts.size(); ++e) {
        CHECK(counts[e] >= 1); // the fake's pattern, never written
        totalCounts[e] += counts[e];
      }
      total += t;
    }
    checkTotalsThenNoTokens(layer, total, totalCounts, dir.path("launches.log"));

    // New weights replace the old; a failed load leaves them.
    writeSafetensors(dir.path("w2.safetensors"), checkpoint("F32", 1));
    loadWeights(layer, dir.path("w2.safetensors"), kPrefix);
    CHECK(counter("fake_module_loads") - std::max(loadsBefore, 0) == 1);
    std::vector<Tensor> missing = checkpoint();
    missing.pop_back();
    writeSafetensors(dir.path("bad.safetensors"), missing);
    CHECK(loadFailure(layer, dir.path("bad.safetensors"), kPrefix).status ==
          MOERT_ERROR_MISMATCH);
    std::remove(dir.path("launches.log").c_str());
    std::vector<float> x = input(300 * kHidden);
    forward(layer, x, 300);
    std::vector<std::vector<Descriptor>> ds = checkLaunches(
        readLaunches(dir.path("launches.log")), fakeLaunches(300));
    CHECK(deviceBytes(ds[0][1].aligned, 128) == deviceGate(1));
    CHECK(deviceBytes(ds[1][2].aligned, 192) == deviceW1(1));
  }
  CHECK(counter("fake_live") == 0); // every buffer, stream, module, context
}

TEST_CASE("cuda exec: host calls replay one CUDA graph per token count",
          "[cuda-exec]") {
  TempDir dir;
  FakeDriver fake("h200");
  ScopedEnv log("FAKE_CUDA_LAUNCH_LOG", dir.path("launches.log"));
  writeSafetensors(dir.path("w.safetensors"), checkpoint("F32"));
  // The launches of each call, with graphs and without (MOERT_CUDA_GRAPHS=0).
  auto run = [&](const char *graphs, const std::vector<int64_t> &tokens) {
    ScopedEnv env("MOERT_CUDA_GRAPHS", graphs);
    Layer layer;
    open(layer, MOERT_FAKE_CUDA_LAYER);
    loadWeights(layer, dir.path("w.safetensors"), kPrefix);
    std::vector<std::vector<Launch>> launches;
    for (int64_t t : tokens) {
      INFO("T = " << t);
      std::remove(dir.path("launches.log").c_str());
      // Zeros: T shrinks after 300, so a call's statistics buffer may lie
      // where an earlier call's x was (the fake's kernels write nothing),
      // and the counts read back must stay small.
      forward(layer, std::vector<float>(size_t(t * kHidden), 0.0f), t);
      launches.push_back(readLaunches(dir.path("launches.log")));
      checkLaunches(launches.back(), fakeLaunches(t));
    }
    return launches;
  };
  // Pointers differ between layers; `withParams` compares them too.
  auto sameLaunches = [](const std::vector<Launch> &a,
                         const std::vector<Launch> &b, bool withParams) {
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].kernel == b[i].kernel);
      CHECK(a[i].grid == b[i].grid);
      CHECK(a[i].block == b[i].block);
      CHECK(a[i].params.size() == b[i].params.size());
      if (withParams)
        CHECK(a[i].params == b[i].params);
    }
  };

  // T = 7 is captured once and replayed; 300 grows the arena, which drops
  // the graphs (their parameters point into the old one), so 7 is captured
  // again after it; 1 is new.
  std::vector<int64_t> tokens = {7, 7, 300, 7, 1, 1};
  int capturesBefore = std::max(fakeDriverCounter("fake_captures"), 0);
  int launchesBefore = std::max(fakeDriverCounter("fake_graph_launches"), 0);
  std::vector<std::vector<Launch>> graphs = run("1", tokens);
  CHECK(counter("fake_captures") - capturesBefore == 4);
  CHECK(counter("fake_graph_launches") - launchesBefore == 6);
  CHECK(counter("fake_live") == 0); // graphs and instances released

  // Without graphs: the same launches (checkLaunches checked each call's
  // descriptors against the plan in both runs), directly.
  std::vector<std::vector<Launch>> direct = run("0", tokens);
  CHECK(counter("fake_captures") - capturesBefore == 4);
  CHECK(counter("fake_graph_launches") - launchesBefore == 6);
  for (size_t i = 0; i < tokens.size(); ++i) {
    INFO("call " << i << ", T = " << tokens[i]);
    sameLaunches(graphs[i], direct[i], false);
  }
  // A replay is the capture's launches: the second T = 7 call repeats the
  // first one's parameters (same arena, same weights), as does the second
  // T = 1 call.
  sameLaunches(graphs[0], graphs[1], true);
  sameLaunches(graphs[4], graphs[5], true);
}

TEST_CASE("cuda exec: MOERT_CUDA_PROFILE times each launch of a host call",
          "[cuda-exec]") {
  TempDir dir;
  FakeDriver fake("h200");
  ScopedEnv log("FAKE_CUDA_LAUNCH_LOG", dir.path("launches.log"));
  ScopedEnv profile("MOERT_CUDA_PROFILE", dir.path("profile.jsonl"));
  writeSafetensors(dir.path("w.safetensors"), checkpoint("F32"));
  int capturesBefore = std::max(fakeDriverCounter("fake_captures"), 0);
  {
    Layer layer;
    open(layer, MOERT_FAKE_CUDA_LAYER);
    loadWeights(layer, dir.path("w.safetensors"), kPrefix);
    for (int64_t t : {7, 300}) {
      std::remove(dir.path("launches.log").c_str());
      forward(layer, std::vector<float>(size_t(t * kHidden), 0.0f), t);
      checkLaunches(readLaunches(dir.path("launches.log")), fakeLaunches(t));
    }
  }
  // Launched directly (no graph), one line per call: each launch's time
  // (the fake's events are 1.5 ms apart) in plan order.
  CHECK(counter("fake_captures") == capturesBefore);
  std::ifstream in(dir.path("profile.jsonl"));
  std::string line;
  std::vector<json> calls;
  while (std::getline(in, line))
    calls.push_back(json::parse(line));
  REQUIRE(calls.size() == 2);
  for (size_t c = 0; c < calls.size(); ++c) {
    int64_t t = c == 0 ? 7 : 300;
    CHECK(calls[c]["layer"] == MOERT_FAKE_CUDA_LAYER);
    CHECK(calls[c]["tokens"] == t);
    CHECK(calls[c]["total_ms"] == 1.5);
    std::vector<Expected> expected = fakeLaunches(t);
    REQUIRE(calls[c]["steps"].size() == expected.size());
    for (size_t s = 0; s < expected.size(); ++s) {
      CHECK(calls[c]["steps"][s]["kernel"] == expected[s].kernel);
      CHECK(calls[c]["steps"][s]["ms"] == 1.5);
    }
  }
  CHECK(counter("fake_live") == 0);

  // A file that cannot be written is an error of the call.
  ScopedEnv nowhere("MOERT_CUDA_PROFILE", dir.path("no/such/dir/p.jsonl"));
  Layer layer;
  open(layer, MOERT_FAKE_CUDA_LAYER);
  loadWeights(layer, dir.path("w.safetensors"), kPrefix);
  std::vector<float> x(size_t(7 * kHidden), 0.0f), y(x.size());
  CHECK(moert_layer_forward(layer, x.data(), 7, y.data()) == MOERT_ERROR_IO);
  CHECK(std::string(moert_last_error()).find("MOERT_CUDA_PROFILE: cannot "
                                             "append to") != std::string::npos);
}

TEST_CASE("cuda exec: errors in a call name the step and launch nothing",
          "[cuda-exec]") {
  TempDir dir;
  FakeDriver fake("h200");
  ScopedEnv log("FAKE_CUDA_LAUNCH_LOG", dir.path("launches.log"));
  writeSafetensors(dir.path("w.safetensors"), checkpoint());
  auto run = [&](const std::string &pointer, const json &value,
                 int64_t tokens) {
    json plan = json::parse(R"({"arch": "sm_90a", "image": "fatbin",
      "buffers": [{"dtype": "f32", "shape": ["T", 8]}, {"dtype": "i64", "shape": [4]}],
      "steps": [{"launch": "route", "grid": [1, 1, 1], "block": [1, 1, 1],
                 "args": [{"arg": 0}, {"buffer": 0}]},
                {"launch": "count", "grid": [1, 1, 1], "block": [1, 1, 1],
                 "args": [{"buffer": 1}]}],
      "results": [{"buffer": 0}, {"buffer": 1}]})");
    plan[json::json_pointer(pointer)] = value;
    ScopedEnv env("FAKE_CUDA_PLAN", plan.dump());
    Layer layer;
    open(layer, MOERT_FAKE_CUDA_LAYER);
    loadWeights(layer, dir.path("w.safetensors"), kPrefix);
    std::remove(dir.path("launches.log").c_str());
    std::vector<float> x = input(size_t(tokens * kHidden)), y(x.size());
    moert_status status =
        moert_layer_forward(layer, x.data(), tokens, y.data());
    Failure f{status, status == MOERT_OK ? "(no error)" : moert_last_error()};
    CHECK(!fileExists(dir.path("launches.log")));
    int64_t seen = -1;
    CHECK(lastStats(layer, &seen) == std::vector<int64_t>(kExperts, 0));
    CHECK(seen == 0); // a failed call records nothing
    return f;
  };
  const std::string so = MOERT_FAKE_CUDA_LAYER;
  Failure big =
      run("/steps/1/grid/1", json::parse(R"(["muli", "T", 100000])"), 1);
  CHECK(big.status == MOERT_ERROR_INVALID_ARGUMENT);
  CHECK(big.message == so + ": cuda.steps[1] ('count') for T = 1: grid [1, "
                            "100000, 1] is outside CUDA's limits (x in [1, "
                            "2147483647], y and z in [1, 65535])");
  CHECK(run("/steps/0/grid/0", json::parse(R"(["subi", "T", 3])"), 3).message ==
        so + ": cuda.steps[0] ('route') for T = 3: grid [0, 1, 1] is outside "
             "CUDA's limits (x in [1, 2147483647], y and z in [1, 65535])");
  CHECK(run("/steps/0/block/0", json::parse(R"(["muli", "T", 512])"), 3)
            .message ==
        so + ": cuda.steps[0] ('route') for T = 3: block [1536, 1, 1] is "
             "outside CUDA's limits (each dimension at least 1, z at most 64, "
             "at most 1024 threads)");
  Failure zero = run("/buffers/1/shape/0",
                     json::parse(R"(["divui", 8, ["subi", "T", 2]])"), 2);
  CHECK(zero.status == MOERT_ERROR_FORMAT);
  CHECK(zero.message == so + ": invalid metadata: 'cuda.buffers[1].shape[0]' "
                             "divides by zero for T = 2");
  Failure shape = run("/buffers/0/shape/1", 7, 5);
  CHECK(shape.status == MOERT_ERROR_FORMAT);
  CHECK(shape.message == so + ": invalid metadata: cuda.results[0] (buffer 0) "
                              "has shape [5, 7] for T = 5, expected [5, 8]");
  CHECK(counter("fake_live") == 0);
}

TEST_CASE("cuda exec: the device and the image must fit", "[cuda-exec]") {
  TempDir dir;
  writeSafetensors(dir.path("w.safetensors"), checkpoint());
  {
    FakeDriver fake("sm80");
    Layer layer;
    open(layer, MOERT_FAKE_CUDA_LAYER);
    Failure arch = loadFailure(layer, dir.path("w.safetensors"), kPrefix);
    CHECK(arch.status == MOERT_ERROR_NO_DEVICE);
    CHECK(arch.message ==
          "CUDA device 0 is sm_80; this layer needs sm_90a (Hopper)");
    std::vector<float> x = input(kHidden), y(x.size());
    CHECK(moert_layer_forward(layer, x.data(), 1, y.data()) ==
          MOERT_ERROR_STATE);
  }
  {
    FakeDriver fake("no_device");
    Layer layer;
    open(layer, MOERT_FAKE_CUDA_LAYER);
    CHECK(loadFailure(layer, dir.path("w.safetensors"), kPrefix).message ==
          "no CUDA device: cuInit failed with CUDA_ERROR_NO_DEVICE (no "
          "CUDA-capable device is detected)");
  }
  {
    FakeDriver fake("h200");
    ScopedEnv missing("FAKE_CUDA_MISSING_KERNEL", "expert");
    Layer layer;
    open(layer, MOERT_FAKE_CUDA_LAYER);
    Failure kernel = loadFailure(layer, dir.path("w.safetensors"), kPrefix);
    CHECK(kernel.status == MOERT_ERROR_ABI);
    CHECK(kernel.message ==
          std::string(MOERT_FAKE_CUDA_LAYER) +
              ": no kernel 'expert' in its GPU code (cuModuleGetFunction "
              "failed with CUDA_ERROR_NOT_FOUND (named symbol not found))");
  }
  CHECK(counter("fake_live") == 0);
}

TEST_CASE("cuda exec: forward on device memory and the caller's stream",
          "[cuda-exec]") {
  TempDir dir;
  FakeDriver fake("h200");
  ScopedEnv log("FAKE_CUDA_LAUNCH_LOG", dir.path("launches.log"));
  {
    Layer layer;
    open(layer, MOERT_FAKE_CUDA_LAYER);
    CHECK(moert_layer_forward_cuda(layer, 0, 0, 0, nullptr) ==
          MOERT_ERROR_STATE);
    CHECK(std::string(moert_last_error()) ==
          std::string(MOERT_FAKE_CUDA_LAYER) +
              ": forward on the device called before the weights were "
              "loaded");
    writeSafetensors(dir.path("w.safetensors"), checkpoint());
    loadWeights(layer, dir.path("w.safetensors"), kPrefix);

    // The caller's device memory and stream, made with the driver as a
    // user's CUDA code would (the same primary context).
    auto device = cuda::Device::open(cuda::Driver::load(), 0);
    cuda::Stream stream(device);
    cuda::DeviceBuffer x(device, 300 * kHidden * 4), y(device, 300 * kHidden * 4);
    auto lastStream = [] {
      void *fake = dlopen(MOERT_FAKE_LIBCUDA, RTLD_NOW | RTLD_NOLOAD);
      REQUIRE(fake);
      auto f = reinterpret_cast<int64_t (*)()>(
          dlsym(fake, "fake_last_launch_stream"));
      int64_t value = f ? f() : -2;
      dlclose(fake);
      return value;
    };

    REQUIRE(moert_layer_cuda_reserve(layer, 300) == MOERT_OK);
    CHECK(moert_layer_last_stats(layer, nullptr, nullptr) == MOERT_OK);
    int copies = counter("fake_host_copies");
    int syncs = counter("fake_synchronizations");
    for (int64_t t : {1, 7, 300}) {
      INFO("T = " << t);
      std::remove(dir.path("launches.log").c_str());
      std::vector<float> in = input(size_t(t * kHidden), uint32_t(t));
      std::memcpy(reinterpret_cast<void *>(x.get()), in.data(), in.size() * 4);
      moert_status status = moert_layer_forward_cuda(
          layer, x.get(), t, y.get(), reinterpret_cast<void *>(stream.get()));
      INFO(moert_last_error());
      REQUIRE(status == MOERT_OK);
      // The same launches as a host call, on the caller's stream, reading
      // x and writing the output where the caller's pointers say.
      std::vector<std::vector<Descriptor>> ds = checkLaunches(
          readLaunches(dir.path("launches.log")), fakeLaunches(t));
      CHECK(lastStream() == int64_t(reinterpret_cast<uintptr_t>(stream.get())));
      CHECK(ds[0][0].aligned == int64_t(x.get()));
      CHECK(ds[1][0].aligned == int64_t(x.get()));
      CHECK(ds[1][3].aligned == int64_t(y.get()));
      CHECK(ds[0][2].aligned != int64_t(y.get())); // other buffers: the arena
    }
    // Pointers not 16-byte aligned go through the arena: a device copy of
    // x in, of the output out.
    {
      std::remove(dir.path("launches.log").c_str());
      std::vector<float> in = input(size_t(7 * kHidden), 7);
      cuda::CUdeviceptr xOdd = x.get() + 4, yOdd = y.get() + 8;
      std::memcpy(reinterpret_cast<void *>(xOdd), in.data(), in.size() * 4);
      REQUIRE(moert_layer_forward_cuda(layer, xOdd, 7, yOdd,
                                       reinterpret_cast<void *>(stream.get())) ==
              MOERT_OK);
      std::vector<std::vector<Descriptor>> ds = checkLaunches(
          readLaunches(dir.path("launches.log")), fakeLaunches(7));
      CHECK(ds[0][0].aligned != int64_t(xOdd));
      CHECK(deviceBytes(ds[0][0].aligned, in.size() * 4) == bytesOf(in));
      CHECK(ds[1][3].aligned != int64_t(yOdd));
      CHECK(deviceBytes(int64_t(yOdd), in.size() * 4) ==
            deviceBytes(ds[1][3].aligned, in.size() * 4));
    }
    // Reserved: nothing waited, nothing crossed to the host.
    CHECK(counter("fake_host_copies") == copies);
    CHECK(counter("fake_synchronizations") == syncs);
    int64_t tokens = -1;
    lastStats(layer, &tokens);
    CHECK(tokens == 0); // statistics are not read back

    // A larger call than reserved waits for the stream before it grows the
    // arena; the legacy default stream (NULL) is a stream too.
    cuda::DeviceBuffer big(device, 600 * kHidden * 4), out(device, 600 * kHidden * 4);
    REQUIRE(moert_layer_forward_cuda(layer, big.get(), 600, out.get(),
                                     nullptr) == MOERT_OK);
    CHECK(counter("fake_synchronizations") == syncs + 1);
    CHECK(lastStream() == 0);
    CHECK(counter("fake_host_copies") == copies);
    // A host call after it waits for that stream, then runs on the layer's.
    std::vector<float> in = input(7 * kHidden);
    int before = counter("fake_synchronizations");
    forward(layer, in, 7);
    CHECK(lastStream() != 0);
    CHECK(counter("fake_synchronizations") == before + 2); // theirs, its own

    CHECK(moert_layer_forward_cuda(layer, x.get(), -1, y.get(), nullptr) ==
          MOERT_ERROR_INVALID_ARGUMENT);
    CHECK(moert_layer_forward_cuda(layer, 0, 5, y.get(), nullptr) ==
          MOERT_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(moert_last_error()) ==
          std::string(MOERT_FAKE_CUDA_LAYER) +
              ": forward on the device: x and y must not be NULL");
    CHECK(moert_layer_forward_cuda(layer, 0, 0, 0, nullptr) == MOERT_OK);
    CHECK(moert_layer_cuda_reserve(layer, -3) == MOERT_ERROR_INVALID_ARGUMENT);

    Layer cpu;
    open(cpu, MOERT_FAKE_LAYER);
    CHECK(moert_layer_forward_cuda(cpu, x.get(), 1, y.get(), nullptr) ==
          MOERT_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(moert_last_error()) ==
          std::string(MOERT_FAKE_LAYER) +
              ": forward on the device: this is a cpu layer; only cuda "
              "layers run on device memory");
  }
  CHECK(counter("fake_live") == 0);
}

TEST_CASE("cuda exec: concurrent forward calls on one layer", "[cuda-exec]") {
  TempDir dir;
  FakeDriver fake("h200");
  writeSafetensors(dir.path("w.safetensors"), checkpoint());
  {
    Layer layer;
    open(layer, MOERT_FAKE_CUDA_LAYER);
    loadWeights(layer, dir.path("w.safetensors"), kPrefix);
    // The same T everywhere: the output buffer keeps the fake's pattern, so
    // every call must return the same y.
    constexpr int kCallers = 8, kRounds = 10;
    constexpr int64_t kTokens = 50;
    std::vector<float> reference =
        forward(layer, input(kTokens * kHidden), kTokens);
    REQUIRE(moert_layer_reset_stats(layer) == MOERT_OK);
    std::vector<int> correct(kCallers, 0);
    std::vector<std::thread> callers;
    for (int c = 0; c < kCallers; ++c)
      callers.emplace_back([&, c] {
        std::vector<float> x = input(kTokens * kHidden, uint32_t(c + 2));
        std::vector<float> y(x.size());
        for (int round = 0; round < kRounds; ++round)
          if (moert_layer_forward(layer, x.data(), kTokens, y.data()) ==
                  MOERT_OK &&
              bytesOf(y) == bytesOf(reference))
            ++correct[size_t(c)];
      });
    for (std::thread &t : callers)
      t.join();
    CHECK(correct == std::vector<int>(kCallers, kRounds));
    int64_t tokens = 0;
    REQUIRE(moert_layer_stats(layer, nullptr, &tokens) == MOERT_OK);
    CHECK(tokens == kCallers * kRounds * kTokens);
  }
  CHECK(counter("fake_live") == 0);
}

// --- Layers compiled by moec
// --------------------------------------------------

// Hidden: the ctest fixture "runtime: compile cuda layers" runs it once per
// ctest run, so that the layers follow the moec that was just built.
TEST_CASE("compile the cuda layers the tests use", "[.compile-cuda-layers]") {
  for (const char *family : kCompiledFamilies)
    for (const char *mma : {"sync", "wgmma"}) {
      std::string why;
      if (cudaLayer(family, true, &why, mma).empty()) {
        WARN("no cuda layers compiled: " << why);
        return;
      }
    }
}

TEST_CASE("cuda layer: compiled examples replay their launch plan",
          "[cuda-layer]") {
  for (const char *family : kCompiledFamilies) {
    SECTION(family) {
      std::string why, so = cudaLayer(family, false, &why);
      if (so.empty()) {
        WARN("skipped: moec cannot compile cuda layers here: " << why);
        return;
      }
      FakeH200Example ex(family);
      const Shape &s = ex.shape;
      {
        Layer layer;
        open(layer, so);
        CHECK(std::string(moert_layer_device(layer)) == "cuda");
        json metadata = json::parse(moert_layer_metadata(layer));
        loadWeights(layer, ex.weights, ex.prefix);
        REQUIRE(moert_layer_set_threads(layer, 0) == MOERT_OK); // no effect

        // The plan's buffer references of each launch, to check that one
        // buffer is one pointer and different buffers do not overlap.
        std::vector<json> planLaunches;
        for (const json &step : metadata["cuda"]["steps"])
          if (step.contains("launch"))
            planLaunches.push_back(step);
        const json &planBuffers = metadata["cuda"]["buffers"];

        int64_t total = 0;
        std::vector<int64_t> totalCounts(size_t(s.experts), 0);
        for (int64_t t : {1, 7, 300}) {
          INFO(family << ", T = " << t);
          std::remove(ex.launchLog().c_str());
          std::vector<float> x = input(size_t(t * s.hidden), uint32_t(t));
          std::vector<float> y = forward(layer, x, t);
          REQUIRE(y.size() == size_t(t * s.hidden));
          std::vector<Expected> expected = pipelineLaunches(s, t);
          std::vector<std::vector<Descriptor>> ds =
              checkLaunches(readLaunches(ex.launchLog()), expected);

          // x and the weights, as uploaded.
          int64_t xPtr = ds[0][0].aligned;
          CHECK(deviceBytes(xPtr, x.size() * 4) == bytesOf(x));
          CHECK(
              deviceBytes(ds[0][1].aligned, size_t(s.experts * s.hidden * 4)) ==
              converted(ex.checkpoint, ex.prefix + "gate.weight", FloatFormat::F32));
          auto launchIndex = [&](const std::string &name) {
            size_t i = 0;
            while (i < expected.size() && expected[i].kernel != name)
              ++i;
            REQUIRE(i < expected.size());
            return i;
          };
          const json &args = metadata["arguments"];
          size_t gateUp = launchIndex("expert_ffn_gate_up");
          for (size_t a = 3; a <= 4; ++a) { // gate_up's stacked weights
            const json &ref = planLaunches[gateUp]["args"][a];
            REQUIRE(ref.contains("arg"));
            std::string want = deviceWeight(
                ex.checkpoint, ex.prefix, args[ref["arg"].get<size_t>()], s.experts);
            CHECK(deviceBytes(ds[gateUp][a].aligned, want.size()) == want);
          }

          // One pointer per plan buffer; buffers and x do not overlap.
          std::map<size_t, int64_t> pointerOf;
          std::map<int64_t, int64_t> extents = {
              {xPtr, xPtr + int64_t(x.size() * 4)}};
          for (size_t l = 0; l < ds.size(); ++l)
            for (size_t a = 0; a < ds[l].size(); ++a) {
              const json &ref = planLaunches[l]["args"][a];
              if (ref.contains("arg")) {
                if (ref["arg"] == 0)
                  CHECK(ds[l][a].aligned == xPtr);
                continue;
              }
              size_t buffer = ref["buffer"];
              auto seen = pointerOf.emplace(buffer, ds[l][a].aligned);
              CHECK(seen.first->second == ds[l][a].aligned);
              int64_t bytes = int64_t(typeSize(planBuffers[buffer]["dtype"]));
              for (int64_t size : ds[l][a].sizes)
                bytes *= size;
              extents[ds[l][a].aligned] =
                  std::max(extents[ds[l][a].aligned], ds[l][a].aligned + bytes);
            }
          std::set<int64_t> pointers = {xPtr};
          for (const auto &entry : pointerOf)
            pointers.insert(entry.second);
          CHECK(pointers.size() == pointerOf.size() + 1);
          int64_t end = 0;
          for (const auto &[begin, stop] : extents) {
            CHECK(begin >= end);
            end = stop;
          }

          // y and the statistics are what the result buffers held.
          const Descriptor &out = ds[launchIndex("combine")].back();
          CHECK(out.sizes == std::vector<int64_t>{t, s.hidden});
          CHECK(bytesOf(y) == deviceBytes(out.aligned, y.size() * 4));
          int64_t tokens = -1;
          std::vector<int64_t> counts = lastStats(layer, &tokens);
          CHECK(tokens == t);
          CHECK(bytesOf(counts) ==
                deviceBytes(ds.back().back().aligned, counts.size() * 8));
          for (size_t e = 0; e < counts.size(); ++e)
            totalCounts[e] += counts[e];
          total += t;

          size_t workspace = moert_layer_workspace_bytes(layer, t);
          CHECK(workspace >= size_t(end - xPtr));
          CHECK(workspace < size_t(end - xPtr) + 256);
        }
        checkTotalsThenNoTokens(layer, total, totalCounts,
                                ex.launchLog());
        CHECK(moert_layer_workspace_bytes(layer, 0) == 0);
      }
      CHECK(counter("fake_live") == 0);
    }
  }
}

TEST_CASE("cuda layer: wgmma examples pass tensor maps by value",
          "[cuda-layer]") {
  for (const char *family : kCompiledFamilies) {
    SECTION(family) {
      std::string why, so = cudaLayer(family, false, &why, "wgmma");
      if (so.empty()) {
        WARN("skipped: moec cannot compile cuda layers here: " << why);
        return;
      }
      FakeH200Example ex(family);
      const Shape &s = ex.shape;
      {
        Layer layer;
        open(layer, so);
        json metadata = json::parse(moert_layer_metadata(layer));
        CHECK(metadata["gpu_mma"] == "wgmma");
        CHECK(metadata["wgmma_tiles"] ==
              json::parse(R"({"gate_up_cols": 64, "down_cols": 128,
                              "stages": 4})"));
        loadWeights(layer, ex.weights, ex.prefix);
        // Every wgmma kernel asks for more than the default 48 KB.
        CHECK(counter("fake_shared_opt_ins") >= (s.shared ? 4 : 2));
        const json &args = metadata["arguments"];
        std::vector<json> planLaunches;
        size_t mapsPerCall = 0;
        for (const json &step : metadata["cuda"]["steps"])
          if (step.contains("launch")) {
            planLaunches.push_back(step);
            for (const json &arg : step["args"])
              mapsPerCall += arg.contains("tensor_map");
          }
        CHECK(mapsPerCall == (s.shared ? 10u : 5u));

        for (int64_t t : {1, 7, 300}) {
          INFO(family << ", T = " << t);
          std::remove(ex.launchLog().c_str());
          int mapsBefore = counter("fake_tensor_maps");
          std::vector<float> x = input(size_t(t * s.hidden), uint32_t(t));
          forward(layer, x, t);
          CHECK(counter("fake_tensor_maps") - mapsBefore == int(mapsPerCall));
          std::vector<Launch> launches = readLaunches(ex.launchLog());
          REQUIRE(launches.size() == planLaunches.size());

          const int64_t tile = 128;
          int64_t rows = (t * s.k + s.experts * (tile - 1)) / tile * tile;
          int64_t padded = (t + 63) / 64 * 64;
          // Where each plan buffer is, from the descriptors around it.
          std::map<size_t, int64_t> bufferAt;
          for (size_t l = 0; l < launches.size(); ++l) {
            const json &planArgs = planLaunches[l]["args"];
            size_t p = 0;
            for (const json &arg : planArgs) {
              if (arg.contains("tensor_map")) {
                ++p; // one logged word: the map's first
                continue;
              }
              if (arg.contains("buffer"))
                bufferAt[arg["buffer"].get<size_t>()] = launches[l].params[p + 1];
              size_t rank = arg.contains("buffer")
                                ? metadata["cuda"]["buffers"][arg["buffer"].get<size_t>()]["shape"].size()
                                : args[arg["arg"].get<size_t>()]["shape"].size();
              p += 3 + 2 * rank;
            }
            CHECK(p == launches[l].params.size());
          }
          for (size_t l = 0; l < launches.size(); ++l) {
            const Launch &launch = launches[l];
            INFO(launch.kernel);
            CHECK(launch.kernel == planLaunches[l]["launch"]);
            bool routed = launch.kernel.rfind("expert_", 0) == 0;
            int64_t blockRows = (routed ? rows : padded) / 64;
            int64_t width = routed ? s.width : s.shared;
            if (launch.kernel.find("_gate_up_wgmma") != std::string::npos)
              CHECK(launch.grid == std::array<uint64_t, 3>{
                                       uint64_t(blockRows),
                                       uint64_t((width + 63) / 64), 1});
            else if (launch.kernel.find("_down_wgmma") != std::string::npos)
              CHECK(launch.grid == std::array<uint64_t, 3>{
                                       uint64_t(blockRows),
                                       uint64_t((s.hidden + 127) / 128), 1});
            else if (launch.kernel.find("_gather") != std::string::npos)
              CHECK(launch.grid == std::array<uint64_t, 3>{
                                       uint64_t(routed ? rows : padded), 1, 1});
            else
              continue;
            CHECK(launch.block == std::array<uint64_t, 3>{128, 1, 1});
            // Each map starts where its tensor is: a plan buffer, or the
            // weights as uploaded (bf16).
            const json &planArgs = planLaunches[l]["args"];
            for (size_t a = 0; a < planArgs.size(); ++a) {
              if (!planArgs[a].contains("tensor_map"))
                continue;
              const json &source = planArgs[a]["tensor_map"];
              if (source.contains("buffer")) {
                CHECK(launch.params[a] ==
                      bufferAt.at(source["buffer"].get<size_t>()));
                continue;
              }
              std::string want = deviceWeight(
                  ex.checkpoint, ex.prefix, args[source["arg"].get<size_t>()],
                  s.experts);
              CHECK(deviceBytes(launch.params[a], want.size()) == want);
            }
          }
        }
        // A second call with the last token count replays its CUDA graph
        // (captured after the arena grew for it): the maps captured with
        // it, none encoded.
        int mapsBefore = counter("fake_tensor_maps");
        forward(layer, input(size_t(300 * s.hidden), 300), 300);
        CHECK(counter("fake_tensor_maps") == mapsBefore);
      }
      CHECK(counter("fake_live") == 0);
    }
  }
}

TEST_CASE("cuda layer: wgmma examples need a driver with tensor maps",
          "[cuda-layer]") {
  std::string why, so = cudaLayer("mixtral", false, &why, "wgmma");
  if (so.empty()) {
    WARN("skipped: moec cannot compile cuda layers here: " << why);
    return;
  }
  FakeDriver fake("h200", MOERT_FAKE_LIBCUDA_NO_TENSOR_MAPS);
  Layer layer;
  open(layer, so);
  // Opting in to the kernels' shared memory is the first thing missing.
  moert_status status = moert_layer_load_weights(
      layer, examplePath("mixtral", "model.safetensors").c_str(),
      examplePrefix("mixtral").c_str());
  CHECK(status == MOERT_ERROR_NO_DEVICE);
  std::string message = moert_last_error();
  CHECK(message.find("has no cuFuncSetAttribute") != std::string::npos);
  CHECK(message.find("expert_ffn_") != std::string::npos);
}

TEST_CASE("cuda layer: compiled examples need an sm_90a device",
          "[cuda-layer]") {
  std::string why, so = cudaLayer("mixtral", false, &why);
  if (so.empty()) {
    WARN("skipped: moec cannot compile cuda layers here: " << why);
    return;
  }
  FakeDriver fake("sm80");
  Layer layer;
  open(layer, so);
  Failure f = loadFailure(layer, examplePath("mixtral", "model.safetensors"),
                          examplePrefix("mixtral"));
  CHECK(f.status == MOERT_ERROR_NO_DEVICE);
  CHECK(f.message ==
        "CUDA device 0 is sm_80; this layer needs sm_90a (Hopper)");
}
