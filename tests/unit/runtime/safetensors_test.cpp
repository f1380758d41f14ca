//===- safetensors_test.cpp - The safetensors reader, good and bad files -===//

#include "runtime/src/safetensors.h"

#include "test_util.h"

#include <catch2/catch.hpp>

using namespace moert;
using namespace moert::test;

namespace {
/// The message of opening a file with this header and data.
Failure openRaw(const TempDir &dir, const std::string &header,
                const std::string &data = std::string(64, '\0')) {
  std::string path = dir.path("bad.safetensors");
  writeSafetensorsRaw(path, header, data);
  return failureOf([&] { SafetensorsFile::open(path); });
}

std::string prefixed(const TempDir &dir, const std::string &message) {
  return dir.path("bad.safetensors") + ": " + message;
}
} // namespace

TEST_CASE("safetensors: a well-formed file", "[safetensors]") {
  TempDir dir;
  std::string path = dir.path("ok.safetensors");
  writeSafetensors(path, {f32Tensor("a", {2, 3}, 1.0f),
                          {"b", "BF16", {4}, std::string(8, '\x01')},
                          {"empty", "F16", {0, 5}, ""},
                          {"ids", "I64", {}, std::string(8, '\x02')}});
  SafetensorsFile file = SafetensorsFile::open(path);
  CHECK(file.path() == path);
  CHECK(file.tensors().size() == 4); // __metadata__ is not a tensor
  CHECK(file.find("__metadata__") == nullptr);
  CHECK(file.find("missing") == nullptr);

  const TensorInfo *a = file.find("a");
  REQUIRE(a);
  CHECK(a->dtype == DType::F32);
  CHECK(a->shape == std::vector<int64_t>{2, 3});
  CHECK(a->numElements() == 6);
  float second;
  std::memcpy(&second, file.data(*a) + 4, 4);
  CHECK(second == 2.0f);

  const TensorInfo *b = file.find("b");
  REQUIRE(b);
  CHECK(b->dtype == DType::BF16);
  CHECK(b->begin == 24);
  CHECK(file.data(*b)[0] == 1);
  CHECK(file.find("empty")->numElements() == 0);
  CHECK(file.find("ids")->shape.empty());
  CHECK(file.find("ids")->numElements() == 1);

  // Moving keeps the mapping valid.
  SafetensorsFile moved = std::move(file);
  CHECK(moved.data(*moved.find("b"))[0] == 1);
}

TEST_CASE("safetensors: dtype names and sizes", "[safetensors]") {
  CHECK(parseDType("BF16") == DType::BF16);
  CHECK(parseDType("F8_E4M3") == DType::F8E4M3);
  CHECK_FALSE(parseDType("bf16").has_value());
  CHECK(dtypeName(DType::I64) == "I64");
  CHECK(dtypeSize(DType::F64) == 8);
  CHECK(dtypeSize(DType::F16) == 2);
  CHECK(dtypeSize(DType::Bool) == 1);
}

TEST_CASE("safetensors: files that cannot be read", "[safetensors]") {
  TempDir dir;
  Failure missing =
      failureOf([&] { SafetensorsFile::open(dir.path("none.safetensors")); });
  CHECK(missing.status == MOERT_ERROR_IO);
  CHECK(missing.message == dir.path("none.safetensors") +
                               ": cannot open: No such file or directory");

  Failure directory = failureOf([&] { SafetensorsFile::open(dir.path("")); });
  CHECK(directory.status == MOERT_ERROR_IO);
  CHECK_THAT(directory.message, Catch::EndsWith("not a regular file"));
}

TEST_CASE("safetensors: bad header lengths", "[safetensors]") {
  TempDir dir;
  std::string path = dir.path("bad.safetensors");

  writeFile(path, "abc");
  Failure tiny = failureOf([&] { SafetensorsFile::open(path); });
  CHECK(tiny.status == MOERT_ERROR_FORMAT);
  CHECK(tiny.message == path + ": file is truncated: 3 bytes, less than the "
                               "8-byte header length");

  // Claims 100 header bytes, has 10.
  writeFile(path, std::string("\x64\0\0\0\0\0\0\0", 8) + "{\"a\": {}}\n");
  CHECK(failureOf([&] { SafetensorsFile::open(path); }).message ==
        path + ": file is truncated or its header is corrupt: header length "
               "100 exceeds the 10 bytes that follow it");

  // A huge length is rejected as such, not read.
  writeFile(path, std::string("\0\0\0\0\0\x01\0\0", 8) + "{}");
  Failure huge = failureOf([&] { SafetensorsFile::open(path); });
  CHECK(huge.status == MOERT_ERROR_FORMAT);
  CHECK(huge.message == path + ": corrupt header: header length "
                               "1099511627776 exceeds the 100000000-byte "
                               "limit (not a safetensors file?)");
}

TEST_CASE("safetensors: corrupt JSON", "[safetensors]") {
  TempDir dir;
  Failure f = openRaw(dir, "[\"a\": 1}");
  CHECK(f.status == MOERT_ERROR_FORMAT);
  CHECK_THAT(f.message, Catch::StartsWith(
                            prefixed(dir, "corrupt header: invalid JSON: "
                                          "parse error at line 1, column 5")));
  CHECK(openRaw(dir, "").message.find("corrupt header: invalid JSON") !=
        std::string::npos);
  CHECK(openRaw(dir, "[1, 2]").message ==
        prefixed(dir, "corrupt header: expected a JSON object, found array"));
}

TEST_CASE("safetensors: malformed entries", "[safetensors]") {
  TempDir dir;
  auto entry = [&](const std::string &json) {
    return openRaw(dir, "{\"t\": " + json + "}").message;
  };
  CHECK(entry("[1]") ==
        prefixed(dir, "corrupt header: tensor 't' is not an object"));
  CHECK(entry(R"({"shape": [1], "data_offsets": [0, 4]})") ==
        prefixed(dir, "corrupt header: tensor 't' has no string 'dtype'"));
  CHECK(entry(R"({"dtype": "F32", "data_offsets": [0, 4]})") ==
        prefixed(dir, "corrupt header: tensor 't' has no 'shape' list of "
                      "non-negative integers"));
  CHECK(entry(R"({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]})") ==
        prefixed(dir, "corrupt header: tensor 't' has no 'shape' list of "
                      "non-negative integers"));
  CHECK(entry(R"({"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]})") ==
        prefixed(dir, "corrupt header: tensor 't' has no 'shape' list of "
                      "non-negative integers"));
  CHECK(entry(R"({"dtype": "F32", "shape": [1]})") ==
        prefixed(dir, "corrupt header: tensor 't' has no 'data_offsets' pair "
                      "of non-negative integers"));
  CHECK(entry(R"({"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]})") ==
        prefixed(dir, "corrupt header: tensor 't' has no 'data_offsets' pair "
                      "of non-negative integers"));
}

TEST_CASE("safetensors: unknown dtype", "[safetensors]") {
  TempDir dir;
  Failure f = openRaw(
      dir, R"({"t": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 2]}})");
  CHECK(f.status == MOERT_ERROR_FORMAT);
  CHECK(f.message == prefixed(dir, "tensor 't' has unknown dtype 'Q4'"));
}

TEST_CASE("safetensors: inconsistent offsets", "[safetensors]") {
  TempDir dir;
  CHECK(openRaw(
            dir,
            R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})")
            .message ==
        prefixed(dir, "corrupt header: tensor 't' has data_offsets [8, 0] "
                      "that end before they begin"));
  CHECK(
      openRaw(
          dir,
          R"({"t": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})")
          .message ==
      prefixed(dir,
               "corrupt header: tensor 't' has dtype F32 and shape "
               "[2, 3] (24 bytes) but data_offsets [0, 20] span 20 bytes"));
  CHECK(
      openRaw(
          dir,
          R"({"t": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904], "data_offsets": [0, 4]}})")
          .message ==
      prefixed(dir, "corrupt header: tensor 't' has a shape "
                    "[4611686018427387904, 4611686018427387904] too large "
                    "to address"));
}

TEST_CASE("safetensors: offsets past the end (truncated file)",
          "[safetensors]") {
  TempDir dir;
  Failure f = openRaw(
      dir,
      R"({"t": {"dtype": "F32", "shape": [20], "data_offsets": [0, 80]}})");
  CHECK(f.status == MOERT_ERROR_FORMAT);
  CHECK(f.message == prefixed(dir, "file is truncated: tensor 't' ends at "
                                   "byte 80 of the data but only 64 bytes of "
                                   "data follow the header"));

  // A valid file cut short in its data.
  std::string path = dir.path("cut.safetensors");
  writeSafetensors(path, {f32Tensor("a", {4}), f32Tensor("b", {4})});
  std::string bytes = readFile(path);
  writeFile(path, bytes.substr(0, bytes.size() - 6));
  CHECK_THAT(failureOf([&] { SafetensorsFile::open(path); }).message,
             Catch::StartsWith(path + ": file is truncated: tensor 'b' ends "
                                      "at byte 32"));
}

TEST_CASE("safetensors: overlapping tensors", "[safetensors]") {
  TempDir dir;
  Failure f = openRaw(dir, R"({
      "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
      "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
      "c": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})");
  CHECK(f.status == MOERT_ERROR_FORMAT);
  CHECK(f.message == prefixed(dir, "corrupt header: tensors 'a' [0, 16] and "
                                   "'b' [8, 24] overlap"));
  // Empty tensors overlap nothing; touching tensors do not overlap.
  CHECK(openRaw(dir, R"({
      "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
      "b": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]},
      "c": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})")
            .status == MOERT_OK);
}

TEST_CASE("safetensors: duplicate names", "[safetensors]") {
  TempDir dir;
  Failure f = openRaw(dir, R"({
      "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
      "a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})");
  CHECK(f.status == MOERT_ERROR_FORMAT);
  CHECK(f.message == prefixed(dir, "corrupt header: tensor 'a' appears twice"));
  // Keys of nested objects may repeat across entries.
  CHECK(openRaw(dir, R"({
      "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})")
            .status == MOERT_OK);
}
