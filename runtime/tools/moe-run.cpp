//===- moe-run.cpp - Run a compiled moec layer on a .npy batch -----------===//
//
//   moe-run LAYER.so --weights FILE.safetensors [--prefix P]
//           --input X.npy --output Y.npy [--stats STATS.json]
//           [--threads N] [--device cpu|cuda]
//
// Other tools (tests/e2e, moe-bench) rely on this contract: on any error,
// exactly one line "moe-run: error: <message>" on stderr, exit status 1, and
// no file at the output paths (outputs are written to temporary files and
// renamed into place only once everything has succeeded).
//
//===----------------------------------------------------------------------===//

#include "moert/moert.h"

#include "runtime/src/error.h"
#include "runtime/src/npy.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

using moert::fail;

namespace {

constexpr const char *kUsage =
    R"(usage: moe-run LAYER.so --weights FILE.safetensors [--prefix P]
               --input X.npy --output Y.npy [--stats STATS.json]
               [--threads N] [--device cpu|cuda]

Runs a layer compiled by `moec compile` on the tokens of X.npy (float32
[tokens, hidden_size]) and writes the layer's output to Y.npy (float32, same
shape).

options:
  --weights FILE   safetensors checkpoint with the layer's weights (F32, BF16
                   or F16; converted to f32 when loaded)
  --prefix P       prepended to every weight name of the layer, e.g.
                   model.layers.3.mlp. (default: none)
  --input X.npy    the tokens, float32 [tokens, hidden_size], C order
  --output Y.npy   where to write the output
  --stats FILE     also write the expert load as JSON: {"tokens": T,
                   "num_experts": E, "tokens_per_expert": [...],
                   "imbalance": max/mean}
  --threads N      threads for the forward pass (default 0: one per hardware
                   thread); results are identical for every N
  --device D       cpu (default), or cuda: CUDA device 0 (after
                   CUDA_VISIBLE_DEVICES), for a layer compiled with --target
                   cuda; needs an NVIDIA driver (libcuda.so.1, loaded at run
                   time). --threads does not affect a cuda layer's forward.
  -h, --help       print this help
)";

struct Options {
  std::string layer, weights, prefix, input, output, stats;
  int threads = 0;
  std::string device = "cpu";
  bool help = false;
};

int parseThreads(const std::string &text) {
  char *end = nullptr;
  errno = 0;
  long n = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || n < 0 || n > 1024)
    fail(MOERT_ERROR_INVALID_ARGUMENT,
         "--threads takes an integer in [0, 1024], not '{}'", text);
  return int(n);
}

Options parseArgs(int argc, char **argv) {
  Options o;
  struct Valued {
    const char *flag;
    std::string *value;
  };
  std::string threads;
  const Valued valued[] = {{"--weights", &o.weights}, {"--prefix", &o.prefix},
                           {"--input", &o.input},     {"--output", &o.output},
                           {"--stats", &o.stats},     {"--threads", &threads},
                           {"--device", &o.device}};
  std::vector<std::string> seen;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      o.help = true;
      return o;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      if (!o.layer.empty())
        fail(MOERT_ERROR_INVALID_ARGUMENT,
             "unexpected argument '{}' (the layer is '{}')", arg, o.layer);
      o.layer = arg;
      continue;
    }
    std::string flag = arg.substr(0, arg.find('='));
    auto it = std::find_if(std::begin(valued), std::end(valued),
                           [&](const Valued &v) { return flag == v.flag; });
    if (it == std::end(valued))
      fail(MOERT_ERROR_INVALID_ARGUMENT, "unknown option '{}' (see --help)",
           flag);
    if (std::find(seen.begin(), seen.end(), flag) != seen.end())
      fail(MOERT_ERROR_INVALID_ARGUMENT, "{} given twice", flag);
    seen.push_back(flag);
    if (flag.size() < arg.size())
      *it->value = arg.substr(flag.size() + 1);
    else if (i + 1 < argc)
      *it->value = argv[++i];
    else
      fail(MOERT_ERROR_INVALID_ARGUMENT, "{} needs a value", flag);
  }
  if (o.layer.empty())
    fail(MOERT_ERROR_INVALID_ARGUMENT, "no LAYER.so given (see --help)");
  for (const char *required : {"--weights", "--input", "--output"})
    if (std::find(seen.begin(), seen.end(), required) == seen.end())
      fail(MOERT_ERROR_INVALID_ARGUMENT, "missing {} (see --help)", required);
  if (!threads.empty())
    o.threads = parseThreads(threads);
  return o;
}

/// A C API failure as an exception carrying the runtime's message.
void check(moert_status status) {
  if (status != MOERT_OK)
    throw moert::Error(status, moert_last_error());
}

/// A temporary file next to `target`, renamed onto it by commit() and
/// removed otherwise.
class PendingFile {
public:
  explicit PendingFile(std::string target) : target_(std::move(target)) {
    struct stat st;
    if (::stat(target_.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      fail(MOERT_ERROR_IO, "{}: is a directory", target_);
    std::string pattern = target_ + ".tmp.XXXXXX";
    int fd = ::mkstemp(pattern.data());
    if (fd < 0)
      fail(MOERT_ERROR_IO, "{}: cannot create: {}", target_,
           std::strerror(errno));
    temp_ = pattern;
    mode_t mask = ::umask(0); // mkstemp makes 0600; outputs get the usual.
    ::umask(mask);
    ::fchmod(fd, 0666 & ~mask);
    ::close(fd);
  }
  PendingFile(const PendingFile &) = delete;
  PendingFile &operator=(const PendingFile &) = delete;
  ~PendingFile() {
    if (!temp_.empty())
      ::unlink(temp_.c_str());
  }

  const std::string &temp() const { return temp_; }
  void commit() {
    if (::rename(temp_.c_str(), target_.c_str()) != 0)
      fail(MOERT_ERROR_IO, "{}: cannot write: {}", target_,
           std::strerror(errno));
    temp_.clear();
  }

private:
  std::string target_, temp_;
};

void writeStats(const std::string &path, int64_t tokens,
                const std::vector<int64_t> &counts) {
  int64_t total = 0, max = 0;
  for (int64_t c : counts) {
    total += c;
    max = std::max(max, c);
  }
  double mean = counts.empty() ? 0.0 : double(total) / double(counts.size());
  nlohmann::ordered_json stats = {
      {"tokens", tokens},
      {"num_experts", counts.size()},
      {"tokens_per_expert", counts},
      {"imbalance", total > 0 ? double(max) / mean : 0.0}};
  std::ofstream out(path);
  out << stats.dump(2) << "\n";
  out.close();
  if (!out)
    fail(MOERT_ERROR_IO, "{}: write error", path);
}

void run(const Options &o) {
  if (o.device != "cpu" && o.device != "cuda")
    fail(MOERT_ERROR_INVALID_ARGUMENT,
         "unknown device '{}' (expected cpu or cuda)", o.device);
  // No driver or no device is reported before anything else is read.
  if (o.device == "cuda")
    check(moert_cuda_device_info(0, nullptr, 0, nullptr, nullptr));
  // Created before the layer is opened: an unwritable output fails before
  // any work is done.
  PendingFile output(o.output);
  std::optional<PendingFile> stats;
  if (!o.stats.empty())
    stats.emplace(o.stats);

  moert_layer *handle = nullptr;
  check(moert_layer_open(o.layer.c_str(), &handle));
  std::unique_ptr<moert_layer, void (*)(moert_layer *)> layer(
      handle, moert_layer_close);
  std::string compiledFor = moert_layer_device(layer.get());
  if (compiledFor == "cuda" && o.device != "cuda")
    fail(MOERT_ERROR_MISMATCH,
         "{} was compiled for cuda; run it with --device cuda", o.layer);
  if (compiledFor != o.device)
    fail(MOERT_ERROR_MISMATCH,
         "{} was compiled for {}; compile with --target {} to run on "
         "--device {}",
         o.layer, compiledFor == "cpu" ? "the cpu" : compiledFor, o.device,
         o.device);
  int64_t hidden = moert_layer_hidden_size(layer.get());

  moert::NpyArray x = moert::readNpyF32(o.input, 2);
  if (x.shape[1] != hidden)
    fail(MOERT_ERROR_MISMATCH,
         "{}: shape {} does not match the layer: expected [tokens, {}]",
         o.input, moert::formatShape(x.shape), hidden);
  check(moert_layer_set_threads(layer.get(), o.threads));
  check(moert_layer_load_weights(layer.get(), o.weights.c_str(),
                                 o.prefix.c_str()));

  int64_t tokens = x.shape[0];
  std::vector<float> y(x.data.size());
  check(moert_layer_forward(layer.get(), x.data.data(), tokens, y.data()));
  std::vector<int64_t> counts(size_t(moert_layer_num_experts(layer.get())));
  check(moert_layer_last_stats(layer.get(), counts.data(), nullptr));

  moert::writeNpyF32(output.temp(), y.data(), x.shape);
  if (stats) {
    writeStats(stats->temp(), tokens, counts);
    stats->commit();
  }
  output.commit(); // Last: the output exists only if everything succeeded.
}

int error(const char *message) {
  std::fprintf(stderr, "moe-run: error: %s\n", message);
  return 1;
}

} // namespace

int main(int argc, char **argv) {
  try {
    Options options = parseArgs(argc, argv);
    if (options.help) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    run(options);
    return 0;
  } catch (const moert::Error &e) {
    return error(e.what());
  } catch (const std::bad_alloc &) {
    return error("out of memory");
  } catch (const std::exception &e) {
    return error((std::string("internal error: ") + e.what()).c_str());
  }
}
