//===- test_util.h - Scratch files for the runtime's unit tests -*- C++ -*-===//

#ifndef MOERT_TESTS_TEST_UTIL_H
#define MOERT_TESTS_TEST_UTIL_H

#include "runtime/src/error.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace moert::test {

/// A fresh directory under $TMPDIR, removed with its files at scope exit.
class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  std::string path(const std::string &name) const { return dir_ + "/" + name; }

private:
  std::string dir_;
};

void writeFile(const std::string &path, const std::string &bytes);
std::string readFile(const std::string &path);
bool fileExists(const std::string &path);

/// Raw bytes of a value array, as stored little-endian on this host.
template <typename T> std::string bytesOf(const std::vector<T> &values) {
  std::string bytes(values.size() * sizeof(T), '\0');
  if (!values.empty())
    std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

/// A safetensors file: length, `header` verbatim, then `data`.
void writeSafetensorsRaw(const std::string &path, const std::string &header,
                         const std::string &data);

struct Tensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
/// A well-formed file holding `tensors` back to back, in the given order.
void writeSafetensors(const std::string &path,
                      const std::vector<Tensor> &tensors);

/// An F32 tensor whose element i is `base + i`.
Tensor f32Tensor(const std::string &name, std::vector<int64_t> shape,
                 float base = 0);

/// Sets (nullptr: unsets) an environment variable for one scope.
class ScopedEnv {
public:
  ScopedEnv(const char *name, const char *value) : name_(name) {
    if (const char *old = std::getenv(name))
      old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ScopedEnv(const char *name, const std::string &value)
      : ScopedEnv(name, value.c_str()) {}
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv &) = delete;
  ScopedEnv &operator=(const ScopedEnv &) = delete;

private:
  const char *name_;
  std::optional<std::string> old_;
};

#ifdef MOERT_FAKE_LIBCUDA
/// The fake driver (fake_libcuda.c), in FAKE_CUDA_MODE `mode`, for one
/// scope.
struct FakeDriver {
  explicit FakeDriver(const char *mode,
                      const char *library = MOERT_FAKE_LIBCUDA)
      : library_("MOERT_LIBCUDA", library), mode_("FAKE_CUDA_MODE", mode) {}
  ScopedEnv library_, mode_;
};
#endif

/// An `int name(void)` counter of the fake driver (fake_live, ...), or -1
/// while the runtime has not loaded it.
int fakeDriverCounter(const char *name);

/// What `body` throws as a moert::Error: its status and message.
struct Failure {
  moert_status status;
  std::string message;
};
template <typename F> Failure failureOf(F &&body) {
  try {
    body();
  } catch (const Error &e) {
    return {e.status(), e.message()};
  }
  return {MOERT_OK, "(no error)"};
}

} // namespace moert::test

#endif // MOERT_TESTS_TEST_UTIL_H
