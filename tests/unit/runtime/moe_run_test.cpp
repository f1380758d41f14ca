//===- moe_run_test.cpp - The moe-run command-line contract --------------===//
//
// Runs the moe-run binary on the fake layer: outputs on success; on errors
// exit status 1, one line on stderr and no output file.
//
//===----------------------------------------------------------------------===//

#include "runtime/src/npy.h"

#include "test_util.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include <sys/wait.h>

using namespace moert;
using namespace moert::test;

namespace {
struct Result {
  int status;
  std::string out, err;
};

/// `env`: variable assignments for the command, e.g. "A=1 B=2".
Result moeRun(const TempDir &dir, const std::string &args,
              const std::string &env = "") {
  std::string command = "env " + env + " " + std::string(MOE_RUN) + " " + args +
                        " >" + dir.path("stdout") + " 2>" + dir.path("stderr");
  int raw = std::system(command.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, readFile(dir.path("stdout")),
          readFile(dir.path("stderr"))};
}

/// A checkpoint matching fake_layer.c: every weight 0 but gate row 1 (= 1).
void writeWeights(const std::string &path) {
  Tensor gate = f32Tensor("p.gate.weight", {4, 8});
  std::vector<float> g(32, 0.0f);
  std::fill(g.begin() + 8, g.begin() + 16, 1.0f);
  gate.bytes = bytesOf(g);
  std::vector<Tensor> tensors = {gate};
  for (int e = 0; e < 4; ++e)
    tensors.push_back({"p.experts." + std::to_string(e) + ".w1.weight",
                       "F32",
                       {3, 8},
                       std::string(96, '\0')});
  writeSafetensors(path, tensors);
}

/// Files left in the directory, but for the ones the test made.
std::vector<std::string> leftovers(const TempDir &dir) {
  std::vector<std::string> names;
  for (const auto &entry : std::filesystem::directory_iterator(dir.path("")))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

bool oneErrorLine(const Result &r, const std::string &needle) {
  return r.status == 1 && r.out.empty() &&
         r.err.rfind("moe-run: error: ", 0) == 0 &&
         r.err.find('\n') == r.err.size() - 1 &&
         r.err.find(needle) != std::string::npos;
}
} // namespace

TEST_CASE("moe-run: a run writes the output and statistics", "[moe-run]") {
  TempDir dir;
  writeWeights(dir.path("w.safetensors"));
  std::vector<float> x(5 * 8);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = float(i) * 0.5f;
  writeNpyF32(dir.path("x.npy"), x.data(), {5, 8});

  std::string common = std::string(MOERT_FAKE_LAYER) + " --weights " +
                       dir.path("w.safetensors") + " --prefix p. --input " +
                       dir.path("x.npy");
  Result r = moeRun(dir, common + " --output " + dir.path("y.npy") +
                             " --stats " + dir.path("s.json"));
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  NpyArray y = readNpyF32(dir.path("y.npy"), 2);
  CHECK(y.shape == std::vector<int64_t>{5, 8});
  for (size_t i = 0; i < x.size(); ++i)
    CHECK(y.data[i] == 2 * x[i] + 1);

  nlohmann::json stats = nlohmann::json::parse(readFile(dir.path("s.json")));
  CHECK(stats["tokens"] == 5);
  CHECK(stats["num_experts"] == 4);
  std::vector<int64_t> counts = stats["tokens_per_expert"];
  int64_t total = 0, max = 0;
  for (int64_t c : counts) {
    total += c;
    max = std::max(max, c);
  }
  CHECK(total == 10);
  CHECK(stats["imbalance"].get<double>() ==
        Approx(double(max) / (total / 4.0)));

  // --threads and --opt=value spellings; the same bytes come out.
  r = moeRun(
      dir, common + " --threads=3 --device cpu --output=" + dir.path("y3.npy"));
  REQUIRE(r.status == 0);
  CHECK(readFile(dir.path("y3.npy")) == readFile(dir.path("y.npy")));

  // No tokens: an empty output, imbalance 0.
  writeNpyF32(dir.path("x0.npy"), nullptr, {0, 8});
  r = moeRun(dir, std::string(MOERT_FAKE_LAYER) + " --weights " +
                      dir.path("w.safetensors") + " --prefix p. --input " +
                      dir.path("x0.npy") + " --output " + dir.path("y0.npy") +
                      " --stats " + dir.path("s0.json"));
  REQUIRE(r.status == 0);
  CHECK(readNpyF32(dir.path("y0.npy"), 2).shape == std::vector<int64_t>{0, 8});
  nlohmann::json empty = nlohmann::json::parse(readFile(dir.path("s0.json")));
  CHECK(empty["imbalance"] == 0.0);
  CHECK(empty["tokens"] == 0);

  CHECK(leftovers(dir) ==
        std::vector<std::string>{"s.json", "s0.json", "stderr", "stdout",
                                 "w.safetensors", "x.npy", "x0.npy", "y.npy",
                                 "y0.npy", "y3.npy"});
}

TEST_CASE("moe-run: errors leave no output", "[moe-run]") {
  TempDir dir;
  writeWeights(dir.path("w.safetensors"));
  std::vector<float> x(3 * 8, 1.0f), wide(3 * 16, 1.0f);
  writeNpyF32(dir.path("x.npy"), x.data(), {3, 8});
  writeNpyF32(dir.path("wide.npy"), wide.data(), {3, 16});
  std::string outputs =
      " --output " + dir.path("y.npy") + " --stats " + dir.path("s.json");
  auto run = [&](const std::string &layer, const std::string &weights,
                 const std::string &prefix, const std::string &input,
                 const std::string &extra = "") {
    return moeRun(dir, layer + " --weights " + weights + " --prefix " + prefix +
                           " --input " + input + outputs + extra);
  };
  std::string layer = MOERT_FAKE_LAYER, w = dir.path("w.safetensors"),
              in = dir.path("x.npy");

  CHECK(oneErrorLine(run(layer, w, "q.", in),
                     ": missing tensor 'q.gate.weight' (found 'gate.weight' "
                     "under the prefix 'p.')"));
  CHECK(oneErrorLine(run(layer, w, "p.", dir.path("wide.npy")),
                     "wide.npy: shape [3, 16] does not match the layer: "
                     "expected [tokens, 8]"));
  CHECK(oneErrorLine(run(layer, dir.path("none.safetensors"), "p.", in),
                     "none.safetensors: cannot open"));
  CHECK(oneErrorLine(run(MOERT_FAKE_LAYER_ABI2, w, "p.", in),
                     "layer ABI version 2, runtime supports 1"));
  // --device cuda: no driver, no device, a cpu layer, a cuda layer.
  auto cuda = [&](const std::string &env, const std::string &so) {
    return moeRun(dir,
                  so + " --weights " + w + " --prefix p. --input " + in +
                      outputs + " --device cuda",
                  env);
  };
  std::string fake = std::string("MOERT_LIBCUDA=") + MOERT_FAKE_LIBCUDA;
  CHECK(oneErrorLine(cuda("MOERT_LIBCUDA=" + dir.path("none.so"), layer),
                     "moe-run: error: CUDA driver not found (" +
                         dir.path("none.so") +
                         ": cannot open shared object file: No such file or "
                         "directory); --device cuda needs an NVIDIA driver"));
  CHECK(oneErrorLine(cuda(fake + " FAKE_CUDA_MODE=no_device", layer),
                     "moe-run: error: no CUDA device: cuInit failed with "
                     "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is "
                     "detected)"));
  CHECK(oneErrorLine(cuda(fake + " FAKE_CUDA_MODE=zero_devices", layer),
                     "moe-run: error: no CUDA device: the driver found none"));
  CHECK(oneErrorLine(cuda(fake + " FAKE_CUDA_MODE=h200", layer),
                     "moe-run: error: " + layer +
                         " was compiled for the cpu; compile with --target "
                         "cuda to run on --device cuda"));
  CHECK(oneErrorLine(cuda(fake + " FAKE_CUDA_MODE=h200", MOERT_FAKE_LAYER_CUDA),
                     "moe-run: error: " + std::string(MOERT_FAKE_LAYER_CUDA) +
                         ": invalid metadata: missing field 'cuda' (a cuda "
                         "layer needs its launch plan)"));
  CHECK(oneErrorLine(cuda(fake + " FAKE_CUDA_MODE=sm80", MOERT_FAKE_CUDA_LAYER),
                     "moe-run: error: CUDA device 0 is sm_80; this layer "
                     "needs sm_90a (Hopper)"));
  // A cuda layer on the cpu (the default device).
  CHECK(oneErrorLine(run(MOERT_FAKE_CUDA_LAYER, w, "p.", in),
                     "moe-run: error: " + std::string(MOERT_FAKE_CUDA_LAYER) +
                         " was compiled for cuda; run it with --device cuda"));
  CHECK(oneErrorLine(run(MOERT_FAKE_CUDA_LAYER, w, "p.", in, " --device cpu"),
                     " was compiled for cuda; run it with --device cuda"));
  // This machine's own driver, if any: one of the messages above.
  Result here = cuda("-u MOERT_LIBCUDA", layer);
  CHECK((oneErrorLine(here, "CUDA driver not found (libcuda.so.1: ") ||
         oneErrorLine(here, "no CUDA device") ||
         oneErrorLine(here, "cannot be initialised") ||
         oneErrorLine(here, " was compiled for the cpu; compile with")));
  CHECK(oneErrorLine(run(layer, w, "p.", in, " --device tpu"),
                     "unknown device 'tpu' (expected cpu or cuda)"));
  CHECK(oneErrorLine(run(layer, w, "p.", in, " --threads many"),
                     "--threads takes an integer in [0, 1024], not 'many'"));
  CHECK(oneErrorLine(run(layer, w, "p.", in, " --frobnicate"),
                     "unknown option '--frobnicate' (see --help)"));
  CHECK(oneErrorLine(run(layer, w, "p.", in, " --input x"),
                     "--input given twice"));
  CHECK(oneErrorLine(run(layer, w, "p.", in, " extra.so"),
                     "unexpected argument 'extra.so'"));
  CHECK(oneErrorLine(moeRun(dir, layer + " --input " + in + outputs),
                     "missing --weights (see --help)"));
  CHECK(oneErrorLine(moeRun(dir, "--weights " + w), "no LAYER.so given"));
  CHECK(
      oneErrorLine(moeRun(dir, layer + " --weights " + w + " --input " + in +
                                   " --output " + dir.path("no/such/y.npy")),
                   "no/such/y.npy: cannot create: No such file or directory"));

  CHECK(leftovers(dir) == std::vector<std::string>{"stderr", "stdout",
                                                   "w.safetensors", "wide.npy",
                                                   "x.npy"});
}

TEST_CASE("moe-run: --device cuda runs a cuda layer", "[moe-run]") {
  // fake_cuda_layer.c on the fake driver: the launches do nothing, so y is
  // what the fake device memory held; the run's shape and files matter.
  TempDir dir;
  writeWeights(dir.path("w.safetensors"));
  std::vector<float> x(5 * 8, 0.5f);
  writeNpyF32(dir.path("x.npy"), x.data(), {5, 8});
  std::string env =
      std::string("MOERT_LIBCUDA=") + MOERT_FAKE_LIBCUDA +
      " FAKE_CUDA_MODE=h200 FAKE_CUDA_LAUNCH_LOG=" + dir.path("launches.log");
  std::string args = std::string(MOERT_FAKE_CUDA_LAYER) + " --weights " +
                     dir.path("w.safetensors") + " --prefix p. --input " +
                     dir.path("x.npy") + " --output " + dir.path("y.npy") +
                     " --stats " + dir.path("s.json") + " --device cuda";
  Result r = moeRun(dir, args + " --threads 4", env);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  CHECK(readNpyF32(dir.path("y.npy"), 2).shape == std::vector<int64_t>{5, 8});
  nlohmann::json stats = nlohmann::json::parse(readFile(dir.path("s.json")));
  CHECK(stats["tokens"] == 5);
  CHECK(stats["num_experts"] == 4);
  CHECK(stats["tokens_per_expert"].size() == 4);
  // One forward: the plan's three launches.
  std::string log = readFile(dir.path("launches.log"));
  CHECK(std::count(log.begin(), log.end(), '\n') == 3);
  CHECK(log.rfind("route 1 1 1 128 1 1 21 ", 0) == 0);
}

TEST_CASE("moe-run: --help", "[moe-run]") {
  TempDir dir;
  Result r = moeRun(dir, "--help");
  CHECK(r.status == 0);
  CHECK(r.err.empty());
  CHECK_THAT(r.out, Catch::StartsWith("usage: moe-run LAYER.so --weights"));
}
