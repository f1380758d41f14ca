//===- npy_test.cpp - .npy reading and writing ---------------------------===//

#include "runtime/src/npy.h"

#include "test_util.h"

#include <catch2/catch.hpp>

using namespace moert;
using namespace moert::test;

namespace {
/// A .npy file as NumPy lays it out: magic, version, length, dict, data.
std::string npyBytes(const std::string &dict, const std::string &data,
                     int major = 1) {
  std::string header = dict;
  size_t prefix = major == 1 ? 10 : 12;
  header.append(63 - (prefix + header.size()) % 64, ' ');
  header += '\n';
  std::string bytes = std::string("\x93NUMPY", 6) + char(major) + '\0';
  for (size_t i = 0; i < prefix - 8; ++i)
    bytes += char((header.size() >> (8 * i)) & 0xff);
  return bytes + header + data;
}

std::string dictFor(const std::string &descr, const std::string &shape,
                    const char *fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran +
         ", 'shape': " + shape + ", }";
}
} // namespace

TEST_CASE("npy: write then read", "[npy]") {
  TempDir dir;
  std::string path = dir.path("x.npy");
  std::vector<float> values = {1, 2, 3, 4, 5, 6.5f, -7, 8, 9, 10, 11, 1e-30f};
  writeNpyF32(path, values.data(), {3, 4});
  NpyArray a = readNpyF32(path, 2);
  CHECK(a.shape == std::vector<int64_t>{3, 4});
  CHECK(a.data == values);

  std::string bytes = readFile(path);
  CHECK(bytes.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  CHECK(bytes.size() == 128 + 12 * 4); // header padded to 64-byte lines
  CHECK(bytes[127] == '\n');
  CHECK(bytes.find(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }") ==
        10);

  writeNpyF32(path, values.data(), {12});
  CHECK(readFile(path).find("'shape': (12,), }") != std::string::npos);
  CHECK(readNpyF32(path, 1).data == values);

  writeNpyF32(path, nullptr, {0, 64});
  NpyArray empty = readNpyF32(path, 2);
  CHECK(empty.shape == std::vector<int64_t>{0, 64});
  CHECK(empty.data.empty());
}

TEST_CASE("npy: files NumPy writes", "[npy]") {
  TempDir dir;
  std::string path = dir.path("x.npy");
  std::vector<float> values = {1, 2, 3, 4, 5, 6};
  for (int major : {1, 2, 3}) {
    writeFile(path, npyBytes(dictFor("<f4", "(2, 3)"), bytesOf(values), major));
    CHECK(readNpyF32(path, 2).data == values);
  }
  // Key order and quoting are NumPy's choice; Fortran order is moot in 1-D.
  writeFile(path, npyBytes("{\"shape\": (6,), \"fortran_order\": True, "
                           "\"descr\": \"<f4\"}",
                           bytesOf(values)));
  CHECK(readNpyF32(path, 1).shape == std::vector<int64_t>{6});
  // Trailing bytes after the array are ignored, as np.load does.
  writeFile(path, npyBytes(dictFor("<f4", "(6,)"), bytesOf(values) + "xx"));
  CHECK(readNpyF32(path, 1).data == values);
}

TEST_CASE("npy: errors", "[npy]") {
  TempDir dir;
  std::string path = dir.path("x.npy");
  std::string six = bytesOf(std::vector<float>(6, 1.0f));
  auto error = [&](const std::string &bytes, size_t rank = 2) {
    writeFile(path, bytes);
    Failure f = failureOf([&] { readNpyF32(path, rank); });
    return f.message.substr(0, path.size() + 2) == path + ": "
               ? f.message.substr(path.size() + 2)
               : f.message;
  };

  CHECK(failureOf([&] { readNpyF32(dir.path("no.npy"), 2); }).status ==
        MOERT_ERROR_IO);
  CHECK(error("PK\x03\x04 a zip file") == "not a .npy file (bad magic)");
  CHECK(error("\x93NUM") == "not a .npy file (bad magic)");
  CHECK(error(std::string("\x93NUMPY\x04\x00", 8)) ==
        "unsupported .npy format version 4.0");
  CHECK(error(std::string("\x93NUMPY\x01\x00\x40\x00{'descr'", 17)) ==
        "file is truncated in the header");
  CHECK(error(npyBytes(dictFor("<f8", "(2, 3)"), six + six)) ==
        "dtype is float64 ('<f8'), expected float32 ('<f4')");
  CHECK(error(npyBytes(dictFor(">f4", "(2, 3)"), six)) ==
        "dtype is big-endian float32 ('>f4'), expected float32 ('<f4')");
  CHECK(error(npyBytes(dictFor("<i4", "(2, 3)"), six)) ==
        "dtype is int32 ('<i4'), expected float32 ('<f4')");
  CHECK(error(npyBytes("{'descr': [('a', '<f4')], 'fortran_order': False, "
                       "'shape': (2, 3), }",
                       six)) ==
        "dtype is a structured dtype, expected float32 ('<f4')");
  CHECK(error(npyBytes(dictFor("<f4", "(2, 3)", "True"), six)) ==
        "array is in Fortran (column-major) order; save it in C order");
  CHECK(error(npyBytes(dictFor("<f4", "(1, 2, 3)"), six)) ==
        "array has rank 3 (shape [1, 2, 3]), expected 2");
  CHECK(error(npyBytes(dictFor("<f4", "(6,)"), six)) ==
        "array has rank 1 (shape [6]), expected 2");
  CHECK(error(npyBytes(dictFor("<f4", "(2, 3)"), six.substr(0, 20))) ==
        "file is truncated: shape [2, 3] needs 24 bytes of data, found 20");
  CHECK(error(npyBytes("{'descr': '<f4', 'fortran_order': False}", six)) ==
        "corrupt .npy header: no 'shape' key");
  CHECK(error(npyBytes("{'descr': '<f4', 'fortran_order': 0, 'shape': (6,)}",
                       six)) ==
        "corrupt .npy header: unexpected value at offset 34");
  CHECK(error(npyBytes("{'descr': '<f4', 'shape': (-6,)", six)) ==
        "corrupt .npy header: expected a non-negative integer at offset 27");
  CHECK(error(npyBytes(dictFor("<f4", "(99999999999, 99999999999)"), six)) ==
        "shape [99999999999, 99999999999] is too large");
  // A small file promising 64 GB of data fails before allocating any of it
  // (found by tests/fuzz: it used to allocate and zero the promised size).
  CHECK(error(npyBytes(dictFor("<f4", "(1000000000, 16)"), six)) ==
        "file is truncated: shape [1000000000, 16] needs 64000000000 bytes "
        "of data, found 24");
}

TEST_CASE("npy: write errors", "[npy]") {
  TempDir dir;
  float one = 1;
  Failure f =
      failureOf([&] { writeNpyF32(dir.path("missing/dir/y.npy"), &one, {1}); });
  CHECK(f.status == MOERT_ERROR_IO);
  CHECK(f.message == dir.path("missing/dir/y.npy") +
                         ": cannot create: No such file or directory");
}
