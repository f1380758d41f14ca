//===- reliability_util.cpp - Real compiled layers for the reliability tests //

#include "reliability_util.h"

#include "runtime/src/safetensors.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

namespace moe::reliability {

namespace fs = std::filesystem;

const std::vector<std::string> &families() {
  static const std::vector<std::string> all = {
      "mixtral",     "qwen2_moe",   "qwen3_moe",          "olmoe",
      "deepseek_v2", "deepseek_v3", "switch_transformers"};
  return all;
}

std::string examplePath(const std::string &family, const std::string &name) {
  return std::string(MOE_SOURCE_DIR) + "/examples/" + family + "/" + name;
}

std::string examplePrefix(const std::string &family) {
  std::ifstream in(examplePath(family, "prefix.txt"));
  std::string prefix;
  std::getline(in, prefix);
  while (!prefix.empty() && std::isspace((unsigned char)prefix.back()))
    prefix.pop_back();
  return prefix;
}

namespace {
std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}
} // namespace

int runProgram(const std::vector<std::string> &argv, std::string *out,
               std::string *err) {
  ScratchDir dir;
  std::string outPath = dir.path("stdout"), errPath = dir.path("stderr");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, outPath.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, errPath.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char *> args;
  for (const std::string &a : argv)
    args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    throw std::runtime_error("cannot start " + argv[0] + ": " +
                             std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (out)
    *out = readFile(outPath);
  if (err)
    *err = readFile(errPath);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int compileLayer(const std::string &config, const std::string &out,
                 const std::vector<std::string> &args, std::string *log) {
  // Compile next to the target and rename: concurrent test processes never
  // see (or dlopen) a half-written library.
  std::string temp = out + ".tmp." + std::to_string(::getpid());
  std::vector<std::string> argv = {MOEC, "compile", config, "-o", temp};
  argv.insert(argv.end(), args.begin(), args.end());
  int status = runProgram(argv, nullptr, log);
  if (status == 0 && std::rename(temp.c_str(), out.c_str()) != 0)
    status = -1;
  std::remove(temp.c_str());
  return status;
}

namespace {
/// The file name suffix and moec's options of each variant.
struct VariantInfo {
  const char *suffix;
  std::vector<std::string> options;
};
const VariantInfo &variantInfo(Variant variant) {
  static const VariantInfo f32{"", {}};
  static const VariantInfo pairs{
      "_bf16_pairs",
      {"--weight-dtype", "bf16", "--activation-dtype", "bf16", "--k-pack",
       "2", "--bf16-dot", "none"}};
  static const VariantInfo dot{
      "_bf16_dot",
      {"--weight-dtype", "bf16", "--activation-dtype", "bf16", "--bf16-dot",
       "emulate"}};
  switch (variant) {
  case Variant::bf16Pairs:
    return pairs;
  case Variant::bf16DotEmulated:
    return dot;
  case Variant::f32:
    break;
  }
  return f32;
}

/// DIR/NAME.so compiled from `config` unless it exists (or `force`).
std::string compiledLayer(const std::string &name, const std::string &config,
                          bool force,
                          const std::vector<std::string> &options = {}) {
  std::string dir = MOE_RELIABILITY_LAYER_DIR;
  std::string out = dir + "/" + name + ".so";
  if (force || !fs::exists(out)) {
    fs::create_directories(dir);
    std::string log;
    int status = compileLayer(config, out, options, &log);
    INFO("moec compile " << config << ": " << log);
    REQUIRE(status == 0);
  }
  return out;
}

std::string scaleConfig() {
  std::string path = std::string(MOE_RELIABILITY_LAYER_DIR) + "/scale.json";
  if (!fs::exists(path)) {
    fs::create_directories(MOE_RELIABILITY_LAYER_DIR);
    nlohmann::json config = {{"model_type", "mixtral"},
                             {"hidden_size", kScaleHidden},
                             {"intermediate_size", kScaleWidth},
                             {"num_local_experts", kScaleExperts},
                             {"num_experts_per_tok", 2},
                             {"hidden_act", "silu"}};
    std::string temp = path + ".tmp." + std::to_string(::getpid());
    std::ofstream(temp) << config.dump(2) << "\n";
    fs::rename(temp, path);
  }
  return path;
}
} // namespace

std::string exampleLayer(const std::string &family, Variant variant) {
  const VariantInfo &info = variantInfo(variant);
  return compiledLayer(family + info.suffix, examplePath(family, "config.json"),
                       false, info.options);
}

std::string scaleLayer() {
  return compiledLayer("mixtral_scale", scaleConfig(), false);
}

void compileAllLayers() {
  for (const std::string &family : families())
    for (Variant variant :
         {Variant::f32, Variant::bf16Pairs, Variant::bf16DotEmulated}) {
      const VariantInfo &info = variantInfo(variant);
      compiledLayer(family + info.suffix, examplePath(family, "config.json"),
                    true, info.options);
    }
  compiledLayer("mixtral_scale", scaleConfig(), true);
}

Layer::Layer(const std::string &so, const std::string &weights,
             const std::string &prefix) {
  moert_status status = moert_layer_open(so.c_str(), &handle_);
  INFO(moert_last_error());
  REQUIRE(status == MOERT_OK);
  if (!weights.empty()) {
    status =
        moert_layer_load_weights(handle_, weights.c_str(), prefix.c_str());
    INFO(moert_last_error());
    REQUIRE(status == MOERT_OK);
  }
}

std::vector<float> Layer::forward(const std::vector<float> &x) const {
  std::vector<float> y(x.size());
  moert_status status =
      moert_layer_forward(handle_, x.data(), int64_t(x.size()) / hidden(),
                          y.data());
  INFO(moert_last_error());
  REQUIRE(status == MOERT_OK);
  return y;
}

std::vector<int64_t> Layer::lastStats(int64_t *tokens) const {
  std::vector<int64_t> counts(static_cast<size_t>(experts()));
  REQUIRE(moert_layer_last_stats(handle_, counts.data(), tokens) == MOERT_OK);
  return counts;
}

std::vector<int64_t> Layer::totalStats(int64_t *tokens) const {
  std::vector<int64_t> counts(static_cast<size_t>(experts()));
  REQUIRE(moert_layer_stats(handle_, counts.data(), tokens) == MOERT_OK);
  return counts;
}

std::vector<float> randomInput(int64_t tokens, int64_t hidden,
                               uint64_t seed) {
  // splitmix64, then the sum of four uniforms (mean 0, variance 1/3 * 4/4).
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&] {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  std::vector<float> x(size_t(tokens * hidden));
  for (float &v : x) {
    float sum = 0;
    for (int i = 0; i < 4; ++i)
      sum += float(next() >> 40) * (1.0f / 16777216.0f) - 0.5f;
    v = sum * 1.7320508f; // unit variance
  }
  return x;
}

std::string firstDifference(const std::vector<float> &a,
                            const std::vector<float> &b, int64_t hidden) {
  if (a.size() != b.size())
    return "sizes " + std::to_string(a.size()) + " and " +
           std::to_string(b.size());
  if (!a.empty() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0)
    return "";
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], 4) != 0) {
      std::ostringstream s;
      s << "token " << i / size_t(hidden) << " element " << i % size_t(hidden)
        << ": " << a[i] << " vs " << b[i];
      return s.str();
    }
  return "";
}

size_t rssBytes() {
  std::ifstream in("/proc/self/statm");
  size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * size_t(::sysconf(_SC_PAGESIZE));
}

size_t peakRssBytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0)
      return size_t(std::stoull(line.substr(6))) * 1024; // in kB
  return 0;
}

bool resetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.close();
  return bool(out);
}

std::vector<RawTensor> readCheckpoint(const std::string &path) {
  moert::SafetensorsFile file = moert::SafetensorsFile::open(path);
  std::vector<RawTensor> tensors;
  for (const auto &[name, info] : file.tensors())
    tensors.push_back(
        {name, std::string(moert::dtypeName(info.dtype)), info.shape,
         std::string(reinterpret_cast<const char *>(file.data(info)),
                     size_t(info.end - info.begin))});
  return tensors;
}

void writeCheckpoint(const std::string &path,
                     const std::vector<RawTensor> &tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const RawTensor &t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary);
  uint64_t n = text.size();
  char length[8];
  for (int i = 0; i < 8; ++i)
    length[i] = char((n >> (8 * i)) & 0xff);
  out.write(length, 8);
  out.write(text.data(), std::streamsize(text.size()));
  for (const RawTensor &t : tensors)
    out.write(t.bytes.data(), std::streamsize(t.bytes.size()));
  out.close();
  if (!out)
    throw std::runtime_error("cannot write " + path);
}

ScratchDir::ScratchDir() {
  std::string pattern = fs::temp_directory_path() / "moe-reliability-XXXXXX";
  if (!::mkdtemp(pattern.data()))
    throw std::runtime_error("mkdtemp failed");
  dir_ = pattern;
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  fs::remove_all(dir_, ignored);
}

bool underAddressSanitizer() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#endif
#endif
  return false;
}

} // namespace moe::reliability
