//===- moe_bench.cpp - Time a compiled MoE layer against baselines --------===//
//
//   moe-bench CONFIG|LAYER.so [--weights FILE | --random-weights] [--prefix P]
//             [--dtype f32|bf16] --tokens 1,16,128,1024 [--threads N]
//             [--baselines torch,blas] [--json OUT.json] [--plot OUT.png]
//             [--repeats R] [--warmup W] [--device cpu|cuda]
//
// In one run: the machine's limits (FMA throughput, read bandwidth) from
// probes of its own, the compiled layer through libmoert, and each baseline
// on the same weights and inputs. docs/bench.md explains every number.
//
//===----------------------------------------------------------------------===//

#include "blas_baseline.h"
#include "cuda_bench.h"
#include "probes.h"
#include "spec.h"
#include "tensor_io.h"

#include "moert/moert.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MOE_BENCH_SCRIPT_DIR
#define MOE_BENCH_SCRIPT_DIR "."
#endif

namespace fs = std::filesystem;
using nlohmann::json;
using namespace moebench;

namespace {

constexpr const char *kUsage =
    R"(usage: moe-bench CONFIG|LAYER.so [--weights FILE | --random-weights] [--prefix P]
                 [--dtype f32|bf16] [--activation-dtype f32|bf16]
                 [--tokens 1,16,128,1024] [--threads N]
                 [--baselines torch,blas] [--json OUT.json] [--plot OUT.png]
                 [--repeats R] [--warmup W] [--config CONFIG] [--seed S]
                 [--warm-caches] [--keep-tmp] [--device cpu|cuda]
                 [--gpu-mma sync|wgmma]

Times a moec-compiled MoE layer against baselines on the same weights and
inputs, next to the machine's measured limits (docs/bench.md).

  CONFIG            a Hugging Face config.json: compiled with the moec next to
                    moe-bench (`moec compile CONFIG -o TMP/layer.so
                    --weight-dtype DTYPE`)
  LAYER.so          an already compiled layer; --dtype must match its expert
                    weights' dtype (the default is that dtype)
  --weights FILE    safetensors checkpoint (tensor names: prefix + name)
  --random-weights  deterministic random weights, normal x 1/sqrt(fan_in),
                    written as F32 (BF16 with --dtype bf16) to a temporary
                    file (the default without --weights)
  --prefix P        prefix of the block's tensors in the checkpoint
  --dtype D         the layer's expert weight dtype: f32 (default) or bf16
  --activation-dtype D
                    what a CONFIG's expert matmuls multiply activations in
                    (moec --activation-dtype): f32 (default on cpu) or bf16;
                    a LAYER.so says so in its metadata
  --tokens LIST     token counts per forward (default 1,16,128,1024)
  --threads N       threads for the layer, the baselines and the probes
                    (default: one per hardware thread)
  --baselines LIST  torch, blas, both (default) or none
  --json OUT        write every number as JSON
  --plot OUT.png    draw the roofline (needs python3-matplotlib)
  --repeats R       timed runs per token count (default 10); medians reported
  --warmup W        untimed runs first (default 2)
  --config CONFIG   with LAYER.so: the config it was compiled from, for the
                    baselines' routing (without it: the family's defaults)
  --seed S          seed of the random weights and inputs (default 1)
  --warm-caches     do not evict the caches between timed runs
  --keep-tmp        keep the temporary directory (printed)
  --device D        cpu or cuda (default: what LAYER.so was compiled for; cpu
                    for a CONFIG, compiled with --target cuda for cuda). On
                    cuda the limits are the device's copy bandwidth (a probe
                    of its own) and the dense bf16 matmul rate (PyTorch's
                    cuBLAS, 8192^3); the layer is timed on device memory with
                    CUDA events; the baselines are torch (the Hugging Face
                    loop on the GPU, bf16) and torch_grouped_mm
                    (torch._grouped_mm); expert weights default to bf16
  --gpu-mma K       a CONFIG on cuda: moec --gpu-mma (sync, the default, or
                    wgmma: sm_90a warpgroup MMAs on TMA-loaded tiles); a
                    LAYER.so says which in its metadata
)";

[[noreturn]] void usageError(const std::string &msg) {
  fmt::print(stderr, "moe-bench: error: {}\n(moe-bench --help for usage)\n", msg);
  std::exit(2);
}

struct Options {
  std::string target, weights, prefix, dtype, jsonOut, plotOut, config, device;
  std::string activationDtype;  // empty: moec's default for the target
  std::string gpuMma;           // empty: moec's default
  bool randomWeights = false, warmCaches = false, keepTmp = false;
  std::vector<int64_t> tokens = {1, 16, 128, 1024};
  int threads = 0;
  std::vector<std::string> baselines = {"torch", "blas"};
  bool baselinesGiven = false;
  int repeats = 10, warmup = 2;
  uint64_t seed = 1;
};

int64_t parseInt(const std::string &flag, const std::string &text, int64_t lo, int64_t hi) {
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end || errno || v < lo || v > hi)
    usageError(fmt::format("{} takes an integer in [{}, {}], not '{}'", flag, lo, hi, text));
  return v;
}

std::vector<std::string> splitList(const std::string &s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

Options parseArgs(int argc, char **argv) {
  Options o;
  bool dtypeGiven = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usageError(fmt::format("{} needs a value", a));
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      fmt::print("{}", kUsage);
      std::exit(0);
    } else if (a == "--weights") {
      o.weights = value();
    } else if (a == "--random-weights") {
      o.randomWeights = true;
    } else if (a == "--prefix") {
      o.prefix = value();
    } else if (a == "--dtype") {
      o.dtype = value();
      dtypeGiven = true;
      if (o.dtype != "f32" && o.dtype != "bf16") usageError("--dtype is f32 or bf16, not '" + o.dtype + "'");
    } else if (a == "--activation-dtype") {
      o.activationDtype = value();
      if (o.activationDtype != "f32" && o.activationDtype != "bf16")
        usageError("--activation-dtype is f32 or bf16, not '" + o.activationDtype + "'");
    } else if (a == "--gpu-mma") {
      o.gpuMma = value();
      if (o.gpuMma != "sync" && o.gpuMma != "wgmma")
        usageError("--gpu-mma is sync or wgmma, not '" + o.gpuMma + "'");
    } else if (a == "--tokens") {
      o.tokens.clear();
      for (const std::string &t : splitList(value())) o.tokens.push_back(parseInt("--tokens", t, 1, 1 << 20));
      if (o.tokens.empty()) usageError("--tokens needs at least one count");
    } else if (a == "--threads") {
      o.threads = int(parseInt("--threads", value(), 1, 1024));
    } else if (a == "--device") {
      o.device = value();
      if (o.device != "cpu" && o.device != "cuda") usageError("--device is cpu or cuda, not '" + o.device + "'");
    } else if (a == "--baselines") {
      o.baselines.clear();
      o.baselinesGiven = true;
      for (const std::string &b : splitList(value())) {
        if (b == "none") continue;
        if (b != "torch" && b != "blas") usageError("unknown baseline '" + b + "' (torch, blas or none)");
        if (std::find(o.baselines.begin(), o.baselines.end(), b) == o.baselines.end()) o.baselines.push_back(b);
      }
    } else if (a == "--json") {
      o.jsonOut = value();
    } else if (a == "--plot") {
      o.plotOut = value();
    } else if (a == "--repeats") {
      o.repeats = int(parseInt("--repeats", value(), 1, 100000));
    } else if (a == "--warmup") {
      o.warmup = int(parseInt("--warmup", value(), 0, 100000));
    } else if (a == "--config") {
      o.config = value();
    } else if (a == "--seed") {
      o.seed = uint64_t(parseInt("--seed", value(), 0, INT64_MAX));
    } else if (a == "--warm-caches") {
      o.warmCaches = true;
    } else if (a == "--keep-tmp") {
      o.keepTmp = true;
    } else if (!a.empty() && a[0] == '-') {
      usageError("unknown option '" + a + "'");
    } else if (o.target.empty()) {
      o.target = a;
    } else {
      usageError("more than one CONFIG|LAYER.so given");
    }
  }
  if (o.target.empty()) usageError("no CONFIG or LAYER.so given");
  if (!o.weights.empty() && o.randomWeights) usageError("--weights and --random-weights exclude each other");
  if (o.weights.empty()) o.randomWeights = true;
  if (!dtypeGiven) o.dtype.clear();  // decided once the layer is known
  if (o.threads == 0) o.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  std::sort(o.tokens.begin(), o.tokens.end());
  o.tokens.erase(std::unique(o.tokens.begin(), o.tokens.end()), o.tokens.end());
  return o;
}

// --- progress on stderr: one line, rewritten in place on a terminal ---

class Progress {
public:
  Progress() : tty_(isatty(2)) {}
  void phase(const std::string &what) {
    clear();
    if (tty_) {
      fmt::print(stderr, "[moe-bench] {}", what);
      open_ = true;
    } else {
      fmt::print(stderr, "[moe-bench] {}\n", what);
    }
    std::fflush(stderr);
    what_ = what;
  }
  void step(int done, int total) {
    if (!tty_) return;
    fmt::print(stderr, "\r\033[K[moe-bench] {} {}/{}", what_, done, total);
    std::fflush(stderr);
    open_ = true;
  }
  void clear() {
    if (open_) fmt::print(stderr, "\r\033[K");
    open_ = false;
    std::fflush(stderr);
  }
  ~Progress() { clear(); }

private:
  bool tty_, open_ = false;
  std::string what_;
};

Progress gProgress;

// --- temporary directory, removed at exit (and on SIGINT/SIGTERM) ---

std::string gTmpDir;
bool gKeepTmp = false;

void removeTmp() {
  if (!gTmpDir.empty() && !gKeepTmp) {
    std::error_code ec;
    fs::remove_all(gTmpDir, ec);
  }
}

extern "C" void onSignal(int sig) {
  removeTmp();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

// --- subprocesses ---

struct ProcResult {
  int status = -1;  // exit code, 128+signal, or -1 when it could not start
  std::string out;
};

ProcResult runProcess(const std::vector<std::string> &args,
                      const std::vector<std::pair<std::string, std::string>> &env, bool capture) {
  int fds[2] = {-1, -1};
  if (capture && pipe(fds) != 0) throw Error(fmt::format("pipe: {}", std::strerror(errno)));
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) throw Error(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    if (capture) {
      dup2(fds[1], 1);
      close(fds[0]);
      close(fds[1]);
    }
    for (const auto &[k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char *> cargs;
    for (const std::string &a : args) cargs.push_back(const_cast<char *>(a.c_str()));
    cargs.push_back(nullptr);
    execv(cargs[0], cargs.data());
    fmt::print(stderr, "moe-bench: cannot run {}: {}\n", args[0], std::strerror(errno));
    _exit(127);
  }
  ProcResult r;
  if (capture) {
    close(fds[1]);
    char buf[65536];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0) r.out.append(buf, size_t(n));
    close(fds[0]);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

std::string selfDir() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

std::string scriptDir() {
  const char *env = std::getenv("MOE_BENCH_SCRIPT_DIR");
  return env && *env ? env : MOE_BENCH_SCRIPT_DIR;
}

std::string pythonPath() {
  const char *env = std::getenv("MOE_BENCH_PYTHON");
  return env && *env ? env : "/usr/bin/python3";
}

bool isElf(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("{}: cannot open", path));
  char m[4] = {};
  f.read(m, 4);
  return f.gcount() == 4 && std::memcmp(m, "\x7f" "ELF", 4) == 0;
}

json readJsonFile(const std::string &path) {
  std::ifstream f(path);
  if (!f) throw Error(fmt::format("{}: cannot open", path));
  try {
    return json::parse(f);
  } catch (const json::exception &e) {
    throw Error(fmt::format("{}: not valid JSON ({})", path, e.what()));
  }
}

// --- libmoert, owned ---

struct LayerHandle {
  moert_layer *p = nullptr;
  ~LayerHandle() { moert_layer_close(p); }
  void check(moert_status s, const char *what) {
    if (s != MOERT_OK)
      throw Error(fmt::format("{}: {} ({})", what, moert_last_error(), moert_status_string(s)));
  }
};

// --- measurements ---

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Measurement {
  std::string impl, weightDtype;  // dtype the impl stores the expert weights in
  int64_t tokens = 0, hit = 0;
  std::vector<double> samplesMs;
  double ms = 0, flops = 0, bytes = 0;
  std::optional<double> relDiff;  // max |y - y_moec| / max |y_moec|
  json extra = json::object();
};

// Times fn() `warmup + repeats` times (caches evicted before each, unless
// warm); returns the timed samples in ms.
template <typename F>
std::vector<double> timeRuns(int warmup, int repeats, bool warm, const std::string &label, F fn) {
  std::vector<double> samples;
  int total = warmup + repeats;
  gProgress.phase(label);
  for (int i = 0; i < total; ++i) {
    gProgress.step(i, total);
    if (!warm) evictCaches();
    auto t0 = std::chrono::steady_clock::now();
    fn();
    auto t1 = std::chrono::steady_clock::now();
    if (i >= warmup) samples.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  gProgress.step(total, total);
  return samples;
}

double relDiff(const float *a, const float *ref, int64_t n) {
  double maxDiff = 0, maxRef = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = std::fabs(double(a[i]) - double(ref[i]));
    if (!(d <= maxDiff)) maxDiff = d;  // NaN sticks
    maxRef = std::max(maxRef, std::fabs(double(ref[i])));
  }
  return maxRef > 0 ? maxDiff / maxRef : maxDiff;
}

std::string fmtBytes(double b) {
  if (b >= 1e9) return fmt::format("{:.2f} GB", b * 1e-9);
  if (b >= 1e6) return fmt::format("{:.1f} MB", b * 1e-6);
  return fmt::format("{:.1f} kB", b * 1e-3);
}

std::string fmtFlops(double f) {
  if (f >= 1e9) return fmt::format("{:.2f} GFLOP", f * 1e-9);
  if (f >= 1e6) return fmt::format("{:.1f} MFLOP", f * 1e-6);
  return fmt::format("{:.1f} kFLOP", f * 1e-3);
}

// --- the run ---

struct Run {
  Options opt;
  LayerInfo layer;
  Spec spec;
  json configJson;  // null without a config
  std::string layerPath, weightsPath, prefix, dtype;
  FmaProbe fma;
  ReadProbe read;
  bool cuda = false;
  CudaCopyProbe copy;            // cuda: the device and its copy bandwidth
  double denseBf16Tflops = 0;    // cuda: torch's 8192^3 bf16 matmul; 0 if unknown
  std::vector<float> x;  // [maxTokens, hidden]
  std::map<int64_t, std::vector<float>> moecOut;
  std::vector<Measurement> results;
  json unavailable = json::object();
  json implInfo = json::object();
  bool failed = false;
};

void compileLayer(Run &r) {
  std::string moec = selfDir() + "/moec";
  if (access(moec.c_str(), X_OK) != 0)
    throw Error(fmt::format("no moec next to moe-bench (looked for {})", moec));
  r.layerPath = gTmpDir + "/layer.so";
  gProgress.phase(fmt::format("compiling {} (--weight-dtype {})", r.opt.target, r.dtype));
  std::vector<std::string> args = {moec, "compile", r.opt.target, "-o", r.layerPath, "--weight-dtype", r.dtype};
  if (r.cuda) args.insert(args.end(), {"--target", "cuda"});
  if (!r.opt.activationDtype.empty()) args.insert(args.end(), {"--activation-dtype", r.opt.activationDtype});
  if (!r.opt.gpuMma.empty()) args.insert(args.end(), {"--gpu-mma", r.opt.gpuMma});
  ProcResult p = runProcess(args, {}, false);
  if (p.status != 0) throw Error(fmt::format("moec compile {} failed (exit status {})", r.opt.target, p.status));
}

std::vector<TensorToWrite> randomTensors(const LayerInfo &l, const std::string &prefix) {
  std::vector<TensorToWrite> out;
  for (const WeightArg &w : l.weights) {
    std::vector<int64_t> shape = w.tensorShape();
    float scale = 1.0f / std::sqrt(float(shape.back()));  // fan_in: the last dimension
    for (const std::string &name : w.tensorNames(prefix)) out.push_back({name, shape, scale});
  }
  return out;
}

const Measurement *find(const Run &r, int64_t T, const std::string &impl);

void measureMoec(Run &r, LayerHandle &h) {
  const Options &o = r.opt;
  h.check(moert_layer_set_threads(h.p, o.threads), "moert_layer_set_threads");
  std::vector<int64_t> perExpert(size_t(r.layer.experts));
  std::unique_ptr<CudaLayerTimer> cuda;
  if (r.cuda) {
    gProgress.phase("moec: the input on the device");
    cuda = std::make_unique<CudaLayerTimer>(h.p, r.x.data(), o.tokens.back(), r.layer.hidden);
  }
  for (int64_t T : o.tokens) {
    std::vector<float> y(size_t(T * r.layer.hidden));
    moert_status st = MOERT_OK;
    Measurement m;
    m.impl = "moec";
    m.weightDtype = r.layer.expertDtype;
    m.tokens = T;
    if (cuda) {
      gProgress.phase(fmt::format("moec      T={:<5}", T));
      m.samplesMs = cuda->time(T, o.warmup, o.repeats, [](int i, int n) { gProgress.step(i, n); });
      // The same forward replayed from a CUDA graph (the launches captured
      // once, as a serving loop does): what small batches gain.
      gProgress.phase(fmt::format("moec+graph T={:<5}", T));
      std::vector<double> graph =
          cuda->time(T, o.warmup, o.repeats, [](int i, int n) { gProgress.step(i, n); }, true);
      m.extra["cuda_graph_ms"] = median(graph);
      m.extra["cuda_graph_samples_ms"] = graph;
      // One host call more, for the output and the statistics.
      st = moert_layer_forward(h.p, r.x.data(), T, y.data());
    } else {
      m.samplesMs = timeRuns(o.warmup, o.repeats, o.warmCaches, fmt::format("moec      T={:<5}", T), [&] {
        moert_status s = moert_layer_forward(h.p, r.x.data(), T, y.data());
        if (s != MOERT_OK) st = s;
      });
    }
    h.check(st, "moert_layer_forward");
    int64_t tokens = 0;
    h.check(moert_layer_last_stats(h.p, perExpert.data(), &tokens), "moert_layer_last_stats");
    for (int64_t c : perExpert) m.hit += c > 0;
    m.bytes = r.layer.weightBytes(m.hit);
    m.extra["tokens_per_expert"] = perExpert;
    r.moecOut[T] = std::move(y);
    r.results.push_back(std::move(m));
  }
}

void measureBlas(Run &r) {
  const Options &o = r.opt;
  gProgress.phase("blas: loading the weights (f32)");
  SafetensorsFile file(r.weightsPath);
  BlasBaseline blas(r.spec, r.layer, file, r.prefix, o.threads);
  blas.reserve(o.tokens.back());
  r.implInfo["blas"] = {{"library", blasConfig()}, {"weight_dtype", "f32"},
                        {"note", r.dtype == "bf16" ? "bf16 weights widened to f32 once at load; runs f32"
                                                   : "f32"}};
  for (int64_t T : o.tokens) {
    std::vector<float> y(size_t(T * r.layer.hidden));
    Measurement m;
    m.impl = "blas";
    m.weightDtype = "f32";
    m.tokens = T;
    m.samplesMs = timeRuns(o.warmup, o.repeats, o.warmCaches, fmt::format("blas      T={:<5}", T),
                           [&] { blas.forward(r.x.data(), T, y.data()); });
    m.hit = blas.lastExpertsHit();
    m.bytes = r.layer.weightBytes(m.hit, 4);
    auto it = r.moecOut.find(T);
    if (it != r.moecOut.end()) m.relDiff = relDiff(y.data(), it->second.data(), T * r.layer.hidden);
    r.results.push_back(std::move(m));
  }
}

void measureTorch(Run &r) {
  const Options &o = r.opt;
  std::string python = pythonPath(), script = scriptDir() + "/torch_baseline.py";
  if (access(python.c_str(), X_OK) != 0) {
    r.unavailable["torch"] = fmt::format("{} not found (Debian: apt-get install python3 python3-numpy "
                                         "python3-torch)", python);
    return;
  }
  if (access(script.c_str(), R_OK) != 0) {
    r.unavailable["torch"] = fmt::format("{} not found", script);
    return;
  }
  // The spec and the input for the script.
  json spec = r.spec.toJson();
  json dtypes = json::object();
  for (const auto &[role, name] : r.spec.names)
    for (const WeightArg &w : r.layer.weights)
      if (w.name == name) dtypes[role] = w.dtype;
  spec["dtypes"] = dtypes;
  std::string specPath = gTmpDir + "/spec.json", inputPath = gTmpDir + "/x.npy";
  std::ofstream(specPath) << spec.dump(1) << "\n";
  writeNpyF32(inputPath, r.x.data(), o.tokens.back(), r.layer.hidden);
  std::vector<std::string> toks;
  for (int64_t T : o.tokens) toks.push_back(std::to_string(T));
  std::vector<std::string> args = {python, script, "--spec", specPath, "--weights", r.weightsPath,
                                   "--prefix", r.prefix, "--input", inputPath,
                                   "--tokens", fmt::format("{}", fmt::join(toks, ",")),
                                   "--threads", std::to_string(o.threads),
                                   "--repeats", std::to_string(o.repeats),
                                   "--warmup", std::to_string(o.warmup),
                                   "--dtype", r.dtype, "--outputs", gTmpDir,
                                   "--evict-bytes", std::to_string(o.warmCaches || r.cuda ? 0 : 4 * llcBytes())};
  if (r.cuda) args.insert(args.end(), {"--device", "cuda", "--impls", "loop,grouped_mm", "--probe-matmul"});
  gProgress.phase("torch: starting (python3 bench/torch_baseline.py)");
  gProgress.clear();
  // Threads and wait policy must be set before torch is imported (the script
  // sets them too); OpenBLAS, which Debian's torch calls for matmuls, does
  // not follow torch.set_num_threads.
  std::string n = std::to_string(o.threads);
  ProcResult p = runProcess(args, {{"OMP_WAIT_POLICY", "passive"}, {"OMP_NUM_THREADS", n},
                                   {"OPENBLAS_NUM_THREADS", n}, {"MKL_NUM_THREADS", n}}, true);
  json out;
  try {
    // The JSON is the last line (anything a library printed before it is ignored).
    std::string text = p.out;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    size_t nl = text.rfind('\n');
    out = json::parse(nl == std::string::npos ? text : text.substr(nl + 1));
  } catch (const json::exception &) {
    fmt::print(stderr, "moe-bench: error: the torch baseline failed (exit status {}); its output:\n{}\n",
               p.status, p.out.substr(0, 2000));
    r.unavailable["torch"] = fmt::format("failed (exit status {})", p.status);
    r.failed = true;
    return;
  }
  if (!out.value("available", false)) {
    r.unavailable["torch"] = out.value("reason", std::string("unavailable"));
    return;
  }
  if (p.status != 0) {
    r.unavailable["torch"] = fmt::format("failed (exit status {})", p.status);
    r.failed = true;
    return;
  }
  json info = out;
  info.erase("results");
  r.implInfo["torch"] = info;
  if (out.contains("dense_bf16_tflops") && out["dense_bf16_tflops"].is_number())
    r.denseBf16Tflops = out["dense_bf16_tflops"].get<double>();
  if (out.contains("unavailable_impls"))
    for (const auto &[impl, why] : out["unavailable_impls"].items()) r.unavailable[impl] = why;
  std::string wdt = out.value("weight_dtype", std::string("f32"));
  for (const json &res : out.at("results")) {
    Measurement m;
    std::string impl = res.value("impl", std::string("loop"));
    m.impl = impl == "loop" ? "torch" : "torch_" + impl;
    m.weightDtype = wdt;
    m.tokens = res.at("tokens").get<int64_t>();
    m.samplesMs = res.at("samples_ms").get<std::vector<double>>();
    m.hit = res.at("experts_hit").get<int64_t>();
    if (m.hit < 0)  // not counted (grouped_mm): the same routing hits what moec's did
      if (const Measurement *moec = find(r, m.tokens, "moec")) m.hit = moec->hit;
    m.bytes = r.layer.weightBytes(std::max<int64_t>(m.hit, 0), int(dtypeBytes(wdt)));
    auto it = r.moecOut.find(m.tokens);
    std::string yPath = impl == "loop" ? fmt::format("{}/torch_y_{}.f32", gTmpDir, m.tokens)
                                       : fmt::format("{}/torch_{}_y_{}.f32", gTmpDir, impl, m.tokens);
    std::ifstream f(yPath, std::ios::binary);
    if (f && it != r.moecOut.end()) {
      std::vector<float> y(it->second.size());
      f.read(reinterpret_cast<char *>(y.data()), std::streamsize(y.size() * 4));
      if (f.gcount() == std::streamsize(y.size() * 4))
        m.relDiff = relDiff(y.data(), it->second.data(), int64_t(y.size()));
    }
    r.results.push_back(std::move(m));
  }
}

// --- report ---

void finish(Run &r) {
  for (Measurement &m : r.results) {
    m.ms = median(m.samplesMs);
    m.flops = r.layer.flops(m.tokens);
  }
}

// The compute and bandwidth ceilings the fractions refer to: the CPU's FMA
// and read probes, or the GPU's dense bf16 matmul rate and copy bandwidth
// (0 when unknown).
double computeLimitGflops(const Run &r) { return r.cuda ? r.denseBf16Tflops * 1e3 : r.fma.gflops; }
double bandwidthLimitGbps(const Run &r) { return r.cuda ? r.copy.gbps : r.read.gbps; }
double fraction(double value, double limit) { return limit > 0 ? value / limit : 0; }

const char *const kImpls[] = {"moec", "blas", "torch", "torch_grouped_mm"};

const Measurement *find(const Run &r, int64_t T, const std::string &impl) {
  for (const Measurement &m : r.results)
    if (m.tokens == T && m.impl == impl) return &m;
  return nullptr;
}

void printReport(const Run &r) {
  const LayerInfo &l = r.layer;
  const Spec &s = r.spec;
  std::string shared = s.sharedInter ? fmt::format(", shared width {}", s.sharedInter) : "";
  std::string kernels = l.gpuMma.empty() ? "" : fmt::format("; {} kernels", l.gpuMma);
  fmt::print("\nmoe-bench: {} layer: hidden {}, {} experts of width {}{}, top-{}; {} weights, {} activations{}; "
             "{} thread{}\n",
             l.family, l.hidden, l.experts, s.inter, shared, l.topK, r.dtype, l.activationDtype, kernels,
             r.opt.threads, r.opt.threads == 1 ? "" : "s");
  if (r.cuda) {
    std::string dense = r.denseBf16Tflops > 0 ? fmt::format("{:.1f} TFLOP/s (torch, 8192^3)", r.denseBf16Tflops)
                                              : std::string("unknown (needs torch with CUDA)");
    fmt::print("device:    {} (sm_{}{}); dense bf16 matmul {}, copy {:.1f} GB/s "
               "(read + written, {} MiB)\n", r.copy.device, r.copy.smMajor, r.copy.smMinor, dense,
               r.copy.gbps, r.copy.bufferBytes >> 20);
    fmt::print("timing:    median of {} runs after {} warm-up; CUDA events around each forward\n",
               r.opt.repeats, r.opt.warmup);
  } else {
    fmt::print("machine:   {}; FMA {:.1f} GFLOP/s ({}), read {:.1f} GB/s ({} stream{}/thread over {} MiB, "
               "LLC {} MiB)\n", cpuModel(), r.fma.gflops, r.fma.isa, r.read.gbps, r.read.streams,
               r.read.streams == 1 ? "" : "s", r.read.bufferBytes >> 20, llcBytes() >> 20);
    fmt::print("timing:    median of {} runs after {} warm-up; caches {} between runs\n", r.opt.repeats,
               r.opt.warmup, r.opt.warmCaches ? "kept warm" : "evicted");
  }
  for (const auto &[impl, why] : r.unavailable.items())
    fmt::print("baseline {} unavailable: {}\n", impl, why.get<std::string>());
  for (int64_t T : r.opt.tokens) {
    const Measurement *moec = find(r, T, "moec");
    fmt::print("\ntokens {}: {} per forward; ", T, fmtFlops(l.flops(T)));
    if (moec)
      fmt::print("{}/{} experts hit, {} of expert weights ({:.1f} FLOP/B)\n", moec->hit, l.experts,
                 fmtBytes(moec->bytes), l.flops(T) / moec->bytes);
    fmt::print("  {:<16} {:<7} {:>10} {:>9} {:>9} {:>6} {:>6} {:>9} {:>9}\n", "impl", "weights", "ms",
               "GFLOP/s", "GB/s", r.cuda ? "%MMA" : "%FMA", "%BW", "base/moec", "diff");
    // One row: `ms` for m's work, its ratio and diff columns as given.
    auto row = [&](const char *name, const Measurement &m, double ms, const std::string &ratio,
                   const std::string &diff) {
      double gf = m.flops / (ms * 1e-3) * 1e-9, gb = m.bytes / (ms * 1e-3) * 1e-9;
      fmt::print("  {:<16} {:<7} {:>10.3f} {:>9.1f} {:>9.1f} {:>5.1f}% {:>5.1f}% {:>9} {:>9}\n", name,
                 m.weightDtype, ms, gf, gb, 100 * fraction(gf, computeLimitGflops(r)),
                 100 * fraction(gb, bandwidthLimitGbps(r)), ratio, diff);
    };
    for (const char *impl : kImpls) {
      const Measurement *m = find(r, T, impl);
      if (!m) continue;
      std::string ratio = (moec && m != moec) ? fmt::format("{:.2f}x", m->ms / moec->ms) : "-";
      std::string diff = m->relDiff ? fmt::format("{:.1e}", *m->relDiff) : "-";
      row(impl, *m, m->ms, ratio, diff);
      if (m == moec && m->extra.contains("cuda_graph_ms")) {
        double graphMs = m->extra.at("cuda_graph_ms").get<double>();
        row("moec (graph)", *m, graphMs, fmt::format("{:.2f}x", graphMs / m->ms), "-");
      }
    }
  }
  fmt::print("\nGB/s: expert weights read per second (distinct experts hit x their bytes at the impl's\n"
             "weight dtype, + shared experts); {}, %BW: fraction of the measured limits ({} bounds\n"
             "large token counts, bandwidth small ones); base/moec: baseline ms / moec ms (> 1: moec\n"
             "is faster); diff: max |y - y_moec| / max |y_moec| on the same weights and inputs.\n",
             r.cuda ? "%MMA" : "%FMA", r.cuda ? "MMA" : "FMA");
  std::fflush(stdout);
}

json toJson(const Run &r) {
  json machine = {{"fma_gflops", computeLimitGflops(r)}, {"read_gbps", bandwidthLimitGbps(r)},
                  {"threads", r.opt.threads}, {"fma_isa", r.fma.isa},
                  {"read_buffer_bytes", r.read.bufferBytes}, {"read_streams_per_thread", r.read.streams}, {"llc_bytes", llcBytes()},
                  {"cpu_model", cpuModel()},
                  {"hardware_threads", std::thread::hardware_concurrency()}};
  if (r.cuda) {
    // fma_gflops / read_gbps are the device's ceilings here; the CPU's
    // probes did not run.
    machine["device"] = r.copy.device;
    machine["compute_capability"] = fmt::format("{}.{}", r.copy.smMajor, r.copy.smMinor);
    machine["copy_gbps"] = r.copy.gbps;
    machine["copy_buffer_bytes"] = r.copy.bufferBytes;
    machine["dense_bf16_tflops"] = r.denseBf16Tflops > 0 ? json(r.denseBf16Tflops) : json(nullptr);
    machine["dense_bf16_source"] = "torch.matmul bf16 8192x8192x8192 (cuBLAS)";
    for (const char *cpuOnly : {"fma_isa", "read_buffer_bytes", "read_streams_per_thread", "llc_bytes"})
      machine.erase(cpuOnly);
  }
  json results = json::array();
  for (const Measurement &m : r.results) {
    double sec = m.ms * 1e-3;
    json e = {{"tokens", m.tokens}, {"impl", m.impl}, {"dtype", r.dtype}, {"weight_dtype", m.weightDtype},
              {"ms", m.ms}, {"gflops", m.flops / sec * 1e-9}, {"weight_gbps", m.bytes / sec * 1e-9},
              {"ms_min", *std::min_element(m.samplesMs.begin(), m.samplesMs.end())},
              {"ms_max", *std::max_element(m.samplesMs.begin(), m.samplesMs.end())},
              {"samples_ms", m.samplesMs}, {"flops", m.flops}, {"weight_bytes", m.bytes},
              {"experts_hit", m.hit}, {"intensity_flop_per_byte", m.flops / m.bytes},
              {"fma_fraction", fraction(m.flops / sec * 1e-9, computeLimitGflops(r))},
              {"bw_fraction", fraction(m.bytes / sec * 1e-9, bandwidthLimitGbps(r))}};
    const Measurement *moec = find(r, m.tokens, "moec");
    if (m.impl == "moec") {
      e["activation_dtype"] = r.layer.activationDtype;
      json ratios = json::object();
      for (const Measurement &b : r.results)
        if (b.tokens == m.tokens && b.impl != "moec") ratios[b.impl] = b.ms / m.ms;
      e["baseline_ms_over_moec_ms"] = ratios;
    } else if (moec) {
      e["baseline_ms_over_moec_ms"] = m.ms / moec->ms;
    }
    if (m.relDiff) e["max_rel_diff_vs_moec"] = *m.relDiff;
    e.update(m.extra);
    results.push_back(std::move(e));
  }
  json j = {{"machine", machine}, {"results", results}};
  j["layer"] = {{"family", r.layer.family}, {"hidden_size", r.layer.hidden},
                {"num_experts", r.layer.experts}, {"top_k", r.layer.topK},
                {"expert_width", r.spec.inter}, {"shared_width", r.spec.sharedInter},
                {"expert_bytes", r.layer.expertBytes}, {"shared_bytes", r.layer.sharedBytes},
                {"flops_per_token", r.layer.flopsPerToken}, {"moec_version", r.layer.moecVersion},
                {"threading", r.layer.threading}, {"metadata", r.layer.metadata}};
  j["family"] = r.layer.family;
  j["dtype"] = r.dtype;
  j["activation_dtype"] = r.layer.activationDtype;
  if (!r.layer.gpuMma.empty()) j["gpu_mma"] = r.layer.gpuMma;
  j["target"] = r.opt.target;
  j["device"] = r.cuda ? "cuda" : "cpu";
  if (!r.configJson.is_null()) j["config"] = r.configJson;
  j["spec"] = r.spec.toJson();
  j["weights"] = r.opt.randomWeights ? json("random") : json(r.opt.weights);
  j["seed"] = r.opt.seed;
  j["repeats"] = r.opt.repeats;
  j["warmup"] = r.opt.warmup;
  j["caches"] = r.opt.warmCaches ? "warm" : "evicted";
  j["tokens"] = r.opt.tokens;
  j["baselines"] = r.opt.baselines;
  j["baselines_unavailable"] = r.unavailable;
  j["impl_info"] = r.implInfo;
  return j;
}

int run(Options opt) {
  Run r;
  r.opt = opt;
  const Options &o = r.opt;

  const char *tmpEnv = std::getenv("TMPDIR");
  std::string pattern = std::string(tmpEnv && *tmpEnv ? tmpEnv : "/tmp") + "/moe-bench-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw Error(fmt::format("mkdtemp {}: {}", pattern, std::strerror(errno)));
  gTmpDir = buf.data();
  gKeepTmp = o.keepTmp;
  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  if (o.keepTmp) fmt::print(stderr, "moe-bench: temporary files in {}\n", gTmpDir);

  if (!o.weights.empty() && access(o.weights.c_str(), R_OK) != 0)
    throw Error(fmt::format("{}: cannot open ({})", o.weights, std::strerror(errno)));

  // 1. The layer.
  bool isLayer = isElf(o.target);
  if (!isLayer) {
    r.configJson = readJsonFile(o.target);
    r.cuda = o.device == "cuda";
    if (!o.gpuMma.empty() && !r.cuda) usageError("--gpu-mma needs --device cuda");
    r.dtype = o.dtype.empty() ? (r.cuda ? "bf16" : "f32") : o.dtype;
    compileLayer(r);
  } else {
    r.layerPath = o.target;
    if (!o.config.empty()) r.configJson = readJsonFile(o.config);
  }
  LayerHandle h;
  h.check(moert_layer_open(r.layerPath.c_str(), &h.p), "moert_layer_open");
  r.layer = LayerInfo::fromMetadata(moert_layer_metadata(h.p));
  bool cudaLayer = std::string(moert_layer_device(h.p)) == "cuda";
  if (isLayer) {
    if (!o.device.empty() && (o.device == "cuda") != cudaLayer)
      throw Error(fmt::format("--device {}: {} was compiled for {}", o.device, o.target,
                              cudaLayer ? "cuda" : "cpu"));
    r.cuda = cudaLayer;
    if (r.layer.expertDtype != "f32" && r.layer.expertDtype != "bf16")
      throw Error(fmt::format("{}: expert weights of dtype {} are not supported", o.target, r.layer.expertDtype));
    if (!o.dtype.empty() && o.dtype != r.layer.expertDtype)
      throw Error(fmt::format("--dtype {} does not match {}, whose expert weights are {}", o.dtype,
                              o.target, r.layer.expertDtype));
    r.dtype = r.layer.expertDtype;
    if (!o.activationDtype.empty() && o.activationDtype != r.layer.activationDtype)
      throw Error(fmt::format("--activation-dtype {} does not match {}, whose expert matmuls multiply {}",
                              o.activationDtype, o.target, r.layer.activationDtype));
    if (!o.gpuMma.empty() && o.gpuMma != r.layer.gpuMma)
      throw Error(fmt::format("--gpu-mma {} does not match {}, whose kernels are {}", o.gpuMma, o.target,
                              r.layer.gpuMma.empty() ? std::string("cpu code") : r.layer.gpuMma));
  }
  if (r.configJson.is_null()) {
    r.spec = Spec::fromLayer(r.layer);
    if (!o.baselines.empty())
      fmt::print(stderr, "moe-bench: note: no config for {}: the baselines route with the {} defaults "
                         "(pass --config for the exact routing)\n", o.target, r.layer.family);
  } else {
    r.spec = Spec::fromConfig(r.configJson);
  }
  r.spec.checkAgainst(r.layer);

  // The baselines: blas is a CPU one; on cuda the torch script runs both of
  // its GPU implementations.
  if (r.cuda) {
    std::vector<std::string> baselines;
    for (const std::string &b : o.baselines) {
      if (b == "blas") {
        if (r.opt.baselinesGiven) r.unavailable["blas"] = "a CPU baseline; this is a cuda layer";
      } else {
        baselines.push_back(b);
      }
    }
    r.opt.baselines = baselines;
  }

  // 2. The machine's limits, before anything big is in memory.
  if (r.cuda) {
    gProgress.phase("probing the CUDA device's copy bandwidth");
    r.copy = probeCudaCopy();
  } else {
    gProgress.phase(fmt::format("probing FMA throughput on {} thread(s)", o.threads));
    r.fma = probeFma(o.threads);
    gProgress.phase(fmt::format("probing read bandwidth on {} thread(s)", o.threads));
    r.read = probeReadBandwidth(o.threads);
  }

  // 3. Weights and inputs.
  r.prefix = o.prefix;
  if (o.randomWeights) {
    r.weightsPath = gTmpDir + "/weights.safetensors";
    double bytes = double(r.layer.experts) * double(r.layer.expertElements) * (r.dtype == "bf16" ? 2 : 4);
    gProgress.phase(fmt::format("writing random weights ({}, {})", r.dtype, fmtBytes(bytes)));
    writeRandomSafetensors(r.weightsPath, randomTensors(r.layer, r.prefix), r.dtype == "bf16", o.seed,
                           int(std::max(1u, std::thread::hardware_concurrency())));
  } else {
    r.weightsPath = o.weights;
  }
  gProgress.phase("moec: loading the weights");
  h.check(moert_layer_load_weights(h.p, r.weightsPath.c_str(), r.prefix.c_str()), "moert_layer_load_weights");
  r.x.resize(size_t(o.tokens.back() * r.layer.hidden));
  fillNormal(r.x.data(), int64_t(r.x.size()), 1.0f, o.seed, "input", 1);

  // 4. The compiled layer, then the baselines, one after the other.
  measureMoec(r, h);
  moert_layer_close(h.p);
  h.p = nullptr;
  for (const std::string &b : o.baselines) {
    // Let the previous phase's worker threads go idle before timing.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    if (b == "blas") measureBlas(r);
    if (b == "torch") measureTorch(r);
    if (r.unavailable.contains(b)) {
      gProgress.clear();
      fmt::print(stderr, "moe-bench: baseline {} unavailable: {}\n", b, r.unavailable[b].get<std::string>());
    }
  }
  gProgress.clear();
  finish(r);
  printReport(r);

  // 5. JSON and plot.
  json j = toJson(r);
  std::string jsonPath = o.jsonOut;
  if (jsonPath.empty() && !o.plotOut.empty()) jsonPath = gTmpDir + "/results.json";
  if (!jsonPath.empty()) {
    std::ofstream f(jsonPath);
    f << j.dump(1) << "\n";
    if (!f) throw Error(fmt::format("{}: cannot write", jsonPath));
    if (!o.jsonOut.empty()) fmt::print("wrote {}\n", o.jsonOut);
  }
  if (!o.plotOut.empty()) {
    std::string python = pythonPath();
    if (access(python.c_str(), X_OK) != 0)
      throw Error(fmt::format("--plot needs {} with matplotlib (Debian: apt-get install python3-matplotlib)", python));
    ProcResult p = runProcess({python, scriptDir() + "/plot_roofline.py", jsonPath, o.plotOut}, {}, false);
    if (p.status != 0) throw Error(fmt::format("plotting the roofline failed (exit status {})", p.status));
    fmt::print("wrote {}\n", o.plotOut);
  }
  return r.failed ? 1 : 0;
}

}  // namespace

int main(int argc, char **argv) {
  Options opt = parseArgs(argc, argv);
  int status = 1;
  try {
    status = run(opt);
  } catch (const Error &e) {
    gProgress.clear();
    fmt::print(stderr, "moe-bench: error: {}\n", e.what());
  } catch (const std::exception &e) {
    gProgress.clear();
    fmt::print(stderr, "moe-bench: error: {}\n", e.what());
  }
  removeTmp();
  return status;
}
