//===- npy.h - float32 .npy files (NumPy format 1.0-3.0) -------*- C++ -*-===//
//
// moe-run's input and output format. Only what moec layers take is read:
// little-endian float32 ('<f4') in C order; anything else is an error that
// names the file and what it holds instead.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_NPY_H
#define MOERT_SRC_NPY_H

#include <cstdint>
#include <string>
#include <vector>

namespace moert {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data; // row-major
};

/// Reads a float32 array of rank `rank`. Throws moert::Error naming `path`.
NpyArray readNpyF32(const std::string &path, size_t rank);

/// Writes a float32 array (format 1.0, or 2.0 for a header over 64 KiB).
/// `data` holds the product of `shape` elements.
void writeNpyF32(const std::string &path, const float *data,
                 const std::vector<int64_t> &shape);

} // namespace moert

#endif // MOERT_SRC_NPY_H
