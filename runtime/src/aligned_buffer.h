//===- aligned_buffer.h - 64-byte aligned weight storage -------*- C++ -*-===//
//
// Packed weights start on a cache line (and an AVX-512 vector), which the
// generated kernels may exploit.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_ALIGNED_BUFFER_H
#define MOERT_SRC_ALIGNED_BUFFER_H

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace moert {

class AlignedBuffer {
public:
  static constexpr size_t kAlignment = 64;

  AlignedBuffer() = default;
  /// Uninitialised room for `bytes` bytes; throws std::bad_alloc.
  explicit AlignedBuffer(size_t bytes) : size_(bytes) {
    if (bytes > SIZE_MAX - kAlignment)
      throw std::bad_alloc();
    size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    data_.reset(static_cast<unsigned char *>(
        std::aligned_alloc(kAlignment, rounded ? rounded : kAlignment)));
    if (!data_)
      throw std::bad_alloc();
  }

  unsigned char *data() const { return data_.get(); }
  size_t size() const { return size_; }

private:
  struct Free {
    void operator()(unsigned char *p) const { std::free(p); }
  };
  std::unique_ptr<unsigned char, Free> data_;
  size_t size_ = 0;
};

} // namespace moert

#endif // MOERT_SRC_ALIGNED_BUFFER_H
