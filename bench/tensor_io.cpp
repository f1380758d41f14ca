//===- tensor_io.cpp - safetensors and .npy for moe-bench -----------------===//

#include "tensor_io.h"
#include "spec.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <memory>
#include <thread>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace moebench {

using nlohmann::json;

float f16ToF32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      man <<= 1;
    } while (!(man & 0x400));
    u = sign | uint32_t(112 - e) << 23 | ((man & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// --- deterministic normals: xoshiro256** streams, Marsaglia's polar method ---

namespace {

uint64_t splitmix64(uint64_t &x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string &s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

struct Xoshiro {
  uint64_t s[4];
  explicit Xoshiro(uint64_t seed) {
    for (auto &v : s) v = splitmix64(seed);
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

constexpr int64_t kChunk = 1 << 16;  // one random stream per chunk of a tensor

void fillChunk(float *out, int64_t n, float scale, uint64_t streamSeed) {
  Xoshiro rng(streamSeed);
  int64_t i = 0;
  while (i < n) {
    double u, v, s;
    do {
      u = 2.0 * rng.uniform() - 1.0;
      v = 2.0 * rng.uniform() - 1.0;
      s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double m = std::sqrt(-2.0 * std::log(s) / s);
    out[i++] = float(u * m) * scale;
    if (i < n) out[i++] = float(v * m) * scale;
  }
}

template <typename F>
void parallelChunks(int64_t chunks, int threads, F fn) {
  threads = int(std::max<int64_t>(1, std::min<int64_t>(threads, chunks)));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int64_t c = t; c < chunks; c += threads) fn(c);
    });
  for (int64_t c = 0; c < chunks; c += threads) fn(c);
  for (auto &th : pool) th.join();
}

}  // namespace

void fillNormal(float *out, int64_t n, float scale, uint64_t seed, const std::string &name,
                int threads) {
  uint64_t base = seed ^ fnv1a(name);
  int64_t chunks = (n + kChunk - 1) / kChunk;
  parallelChunks(chunks, threads, [&](int64_t c) {
    int64_t begin = c * kChunk, len = std::min(kChunk, n - begin);
    uint64_t key = base + uint64_t(c) * 0xd1b54a32d192ed03ull;
    fillChunk(out + begin, len, scale, splitmix64(key));
  });
}

// --- safetensors ---

namespace {

struct File {
  FILE *f;
  std::string path;
  File(const std::string &p, const char *mode) : f(std::fopen(p.c_str(), mode)), path(p) {
    if (!f) throw Error(fmt::format("{}: cannot open ({})", p, std::strerror(errno)));
  }
  ~File() {
    if (f) std::fclose(f);
  }
  void write(const void *data, size_t n) {
    if (n && std::fwrite(data, 1, n, f) != n)
      throw Error(fmt::format("{}: write failed ({})", path, std::strerror(errno)));
  }
  void close() {
    FILE *g = f;
    f = nullptr;
    if (std::fclose(g) != 0) throw Error(fmt::format("{}: write failed ({})", path, std::strerror(errno)));
  }
};

int64_t product(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

}  // namespace

void writeRandomSafetensors(const std::string &path, const std::vector<TensorToWrite> &tensors,
                            bool bf16, uint64_t seed, int threads) {
  json header = json::object();
  uint64_t offset = 0;
  const int64_t elemBytes = bf16 ? 2 : 4;
  for (const TensorToWrite &t : tensors) {
    uint64_t bytes = uint64_t(product(t.shape) * elemBytes);
    header[t.name] = {{"dtype", bf16 ? "BF16" : "F32"}, {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  header["__metadata__"] = {{"format", "pt"}, {"generator", "moe-bench --random-weights"},
                            {"seed", std::to_string(seed)}};
  std::string text = header.dump();
  while (text.size() % 8) text.push_back(' ');
  File out(path, "wb");
  uint64_t len = text.size();
  out.write(&len, 8);
  out.write(text.data(), text.size());
  std::vector<float> values;
  std::vector<uint16_t> halves;
  for (const TensorToWrite &t : tensors) {
    int64_t n = product(t.shape);
    values.resize(size_t(n));
    fillNormal(values.data(), n, t.scale, seed, t.name, threads);
    if (bf16) {
      halves.resize(size_t(n));
      for (int64_t i = 0; i < n; ++i) halves[size_t(i)] = f32ToBf16(values[size_t(i)]);
      out.write(halves.data(), size_t(n) * 2);
    } else {
      out.write(values.data(), size_t(n) * 4);
    }
  }
  out.close();
}

SafetensorsFile::SafetensorsFile(const std::string &path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < 8) {
    ::close(fd);
    throw Error(fmt::format("{}: not a safetensors file (too short)", path));
  }
  size_ = size_t(st.st_size);
  map_ = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw Error(fmt::format("{}: cannot map ({})", path, std::strerror(errno)));
  }
  const uint8_t *bytes = static_cast<const uint8_t *>(map_);
  uint64_t len;
  std::memcpy(&len, bytes, 8);
  if (len > size_ - 8) throw Error(fmt::format("{}: header length {} runs past the file", path, len));
  json header;
  try {
    header = json::parse(bytes + 8, bytes + 8 + len);
  } catch (const json::exception &e) {
    throw Error(fmt::format("{}: header is not valid JSON ({})", path, e.what()));
  }
  data_ = bytes + 8 + len;
  uint64_t dataSize = size_ - 8 - len;
  for (auto &[name, v] : header.items()) {
    if (name == "__metadata__") continue;
    try {
      Entry e{v.at("dtype").get<std::string>(), v.at("shape").get<std::vector<int64_t>>(),
              v.at("data_offsets").at(0).get<uint64_t>(), v.at("data_offsets").at(1).get<uint64_t>()};
      if (e.begin > e.end || e.end > dataSize)
        throw Error(fmt::format("{}: tensor '{}' lies outside the data", path, name));
      tensors_.emplace(name, std::move(e));
    } catch (const json::exception &) {
      throw Error(fmt::format("{}: malformed header entry '{}'", path, name));
    }
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, size_);
}

const SafetensorsFile::Entry &SafetensorsFile::entry(const std::string &name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(fmt::format("{}: missing tensor '{}'", path_, name));
  return it->second;
}

const std::vector<int64_t> &SafetensorsFile::shape(const std::string &name) const {
  return entry(name).shape;
}

const std::string &SafetensorsFile::dtype(const std::string &name) const {
  return entry(name).dtype;
}

void SafetensorsFile::readF32(const std::string &name, float *out, bool roundBf16) const {
  const Entry &e = entry(name);
  int64_t n = product(e.shape);
  int64_t size = e.dtype == "F32" ? 4 : (e.dtype == "BF16" || e.dtype == "F16") ? 2 : 0;
  if (size == 0)
    throw Error(fmt::format("{}: tensor '{}' has dtype {}; weights must be F32, BF16 or F16", path_,
                            name, e.dtype));
  if (int64_t(e.end - e.begin) != n * size)
    throw Error(fmt::format("{}: tensor '{}' has {} bytes for {} elements", path_, name,
                            e.end - e.begin, n));
  const uint8_t *p = data_ + e.begin;
  if (e.dtype == "F32") {
    std::memcpy(out, p, size_t(n) * 4);
    if (roundBf16)
      for (int64_t i = 0; i < n; ++i) out[i] = bf16ToF32(f32ToBf16(out[i]));
  } else if (e.dtype == "BF16") {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out[i] = bf16ToF32(h);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out[i] = f16ToF32(h);
      if (roundBf16) out[i] = bf16ToF32(f32ToBf16(out[i]));
    }
  }
}

void writeNpyF32(const std::string &path, const float *data, int64_t rows, int64_t cols) {
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
                                   rows, cols);
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  File out(path, "wb");
  const char magic[] = "\x93NUMPY\x01\x00";
  out.write(magic, 8);
  uint16_t hlen = uint16_t(header.size());
  out.write(&hlen, 2);
  out.write(header.data(), header.size());
  out.write(data, size_t(rows * cols) * 4);
  out.close();
}

}  // namespace moebench
