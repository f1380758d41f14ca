//===- fuzz_util.h - Shared helpers for the libFuzzer targets ---*- C++ -*-===//

#ifndef MOE_TESTS_FUZZ_UTIL_H
#define MOE_TESTS_FUZZ_UTIL_H

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <sys/mman.h>
#include <unistd.h>

namespace moe_fuzz {

/// The fuzzer's bytes as a file with a path, in memory (memfd): the readers
/// under test take paths.
class MemFile {
public:
  MemFile(const uint8_t *data, size_t size) {
    fd_ = ::memfd_create("moe-fuzz", MFD_CLOEXEC);
    if (fd_ < 0)
      std::abort();
    for (size_t done = 0; done < size;) {
      ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0)
        std::abort();
      done += size_t(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  MemFile(const MemFile &) = delete;
  MemFile &operator=(const MemFile &) = delete;
  ~MemFile() { ::close(fd_); }
  const std::string &path() const { return path_; }

private:
  int fd_;
  std::string path_;
};

/// A broken promise of the code under test: report it and crash, so that
/// libFuzzer keeps the input.
[[noreturn]] inline void violated(std::string_view what,
                                  std::string_view detail) {
  std::fprintf(stderr, "moe-fuzz: contract violated: %.*s: %.*s\n",
               int(what.size()), what.data(), int(detail.size()),
               detail.data());
  std::abort();
}

/// MOE_FUZZ_MULTILINE_OK=1 tolerates multi-line error messages, to look
/// past a known finding of that kind.
inline bool multiLineOk() {
  static const bool ok = [] {
    const char *v = std::getenv("MOE_FUZZ_MULTILINE_OK");
    return v && *v && std::string_view(v) != "0";
  }();
  return ok;
}

/// Error messages are one non-empty line (docs/guarantees.md).
inline void checkOneLine(std::string_view message) {
  if (message.empty())
    violated("an error message is empty", message);
  if (!multiLineOk() && message.find('\n') != std::string_view::npos)
    violated("an error message is not one line", message);
}

/// Runtime error messages are one line (docs/runtime.md) naming the file.
inline void checkMessage(std::string_view message, std::string_view file) {
  checkOneLine(message);
  if (!file.empty() && message.substr(0, file.size()) != file)
    violated("an error message does not start with the file", message);
}

} // namespace moe_fuzz

#endif // MOE_TESTS_FUZZ_UTIL_H
