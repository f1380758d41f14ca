//===- tensor_io.h - safetensors and .npy for moe-bench -------------------===//
//
// A tiny safetensors writer (the random weights) and reader (the BLAS
// baseline's weights), deterministic random tensors, bf16 rounding, and the
// .npy writer for the inputs handed to the torch baseline.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_BENCH_TENSOR_IO_H
#define MOE_BENCH_TENSOR_IO_H

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace moebench {

inline uint16_t f32ToBf16(float f) {  // round to nearest, ties to even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float bf16ToF32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float f16ToF32(uint16_t h);

// Fills out[0..n) with normal(0, 1) * scale, a pure function of (seed, name):
// the same numbers for any thread count.
void fillNormal(float *out, int64_t n, float scale, uint64_t seed, const std::string &name,
                int threads);

struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  float scale;  // standard deviation
};

// Writes every tensor as random normals (F32, or BF16 when bf16) to `path`.
void writeRandomSafetensors(const std::string &path, const std::vector<TensorToWrite> &tensors,
                            bool bf16, uint64_t seed, int threads);

// A memory-mapped safetensors file.
class SafetensorsFile {
public:
  explicit SafetensorsFile(const std::string &path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile &) = delete;
  SafetensorsFile &operator=(const SafetensorsFile &) = delete;

  bool contains(const std::string &name) const { return tensors_.count(name) != 0; }
  const std::vector<int64_t> &shape(const std::string &name) const;
  const std::string &dtype(const std::string &name) const;  // "F32", "BF16", "F16", ...
  // Converts the tensor to f32 into out (elements of its shape); roundBf16
  // first rounds every value to bf16, as libmoert does for bf16 arguments.
  void readF32(const std::string &name, float *out, bool roundBf16) const;
  const std::string &path() const { return path_; }

private:
  struct Entry {
    std::string dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  const Entry &entry(const std::string &name) const;
  std::string path_;
  void *map_ = nullptr;
  size_t size_ = 0;
  const uint8_t *data_ = nullptr;
  std::map<std::string, Entry> tensors_;
};

void writeNpyF32(const std::string &path, const float *data, int64_t rows, int64_t cols);

}  // namespace moebench

#endif
