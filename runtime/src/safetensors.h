//===- safetensors.h - A strict, mmap-based safetensors reader -*- C++ -*-===//
//
// Format: an 8-byte little-endian header length N, N bytes of JSON mapping
// tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the data area after the header) plus an optional
// "__metadata__" entry, then the data. open() validates the whole header, so
// every TensorInfo it returns lies inside the mapped file.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_SAFETENSORS_H
#define MOERT_SRC_SAFETENSORS_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moert {

enum class DType {
  Bool,
  U8,
  I8,
  F8E4M3,
  F8E5M2,
  F8E8M0,
  U16,
  I16,
  F16,
  BF16,
  U32,
  I32,
  F32,
  U64,
  I64,
  F64,
};

/// The dtype spelled as in safetensors headers ("BF16"), or nothing.
std::optional<DType> parseDType(std::string_view name);
std::string_view dtypeName(DType dtype);
size_t dtypeSize(DType dtype);

struct TensorInfo {
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end; // byte offsets in the data area
  uint64_t numElements() const;
};

class SafetensorsFile {
public:
  /// Maps and validates the file. Throws moert::Error naming `path`.
  static SafetensorsFile open(const std::string &path);

  SafetensorsFile(SafetensorsFile &&other) noexcept;
  SafetensorsFile &operator=(SafetensorsFile &&other) noexcept;
  SafetensorsFile(const SafetensorsFile &) = delete;
  SafetensorsFile &operator=(const SafetensorsFile &) = delete;
  ~SafetensorsFile();

  const std::string &path() const { return path_; }
  const std::map<std::string, TensorInfo> &tensors() const { return tensors_; }
  const TensorInfo *find(const std::string &name) const;
  /// The first byte of the tensor's data (not aligned in general).
  const unsigned char *data(const TensorInfo &tensor) const;

private:
  SafetensorsFile() = default;
  void parseHeader(std::string_view json);
  void checkOverlaps() const;

  std::string path_;
  void *mapping_ = nullptr;
  size_t mappedSize_ = 0;
  const unsigned char *dataArea_ = nullptr;
  uint64_t dataSize_ = 0;
  std::map<std::string, TensorInfo> tensors_;
};

/// Headers above this size are rejected as corrupt before being read.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

} // namespace moert

#endif // MOERT_SRC_SAFETENSORS_H
