//===- test_util.cpp - Scratch files for the runtime's unit tests --------===//

#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <dlfcn.h>

namespace moert::test {

namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "moert-test-XXXXXX");
  if (!::mkdtemp(pattern.data()))
    throw std::runtime_error("mkdtemp failed");
  dir_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  fs::remove_all(dir_, ignored);
}

void writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out)
    throw std::runtime_error("cannot write " + path);
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool fileExists(const std::string &path) { return fs::exists(path); }

void writeSafetensorsRaw(const std::string &path, const std::string &header,
                         const std::string &data) {
  std::string bytes(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i)
    bytes[i] = char((n >> (8 * i)) & 0xff);
  writeFile(path, bytes + header + data);
}

void writeSafetensors(const std::string &path,
                      const std::vector<Tensor> &tensors) {
  nlohmann::ordered_json header = {{"__metadata__", {{"format", "pt"}}}};
  std::string data;
  for (const Tensor &t : tensors) {
    header[t.name] = {
        {"dtype", t.dtype},
        {"shape", t.shape},
        {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  writeSafetensorsRaw(path, text, data);
}

Tensor f32Tensor(const std::string &name, std::vector<int64_t> shape,
                 float base) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  std::vector<float> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    values[size_t(i)] = base + float(i);
  return {name, "F32", std::move(shape), bytesOf(values)};
}

int fakeDriverCounter(const char *name) {
  void *handle = dlopen(MOERT_FAKE_LIBCUDA, RTLD_NOW | RTLD_NOLOAD);
  if (!handle)
    return -1;
  auto counter = reinterpret_cast<int (*)()>(dlsym(handle, name));
  int value = counter ? counter() : -1;
  dlclose(handle);
  return value;
}

} // namespace moert::test
