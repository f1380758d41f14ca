//===- error.h - Errors inside libmoert and at its C boundary --*- C++ -*-===//
//
// Inside the runtime, failures throw moert::Error (a status and a one-line
// message). Every C entry point runs its body through guard(), which turns
// any exception into a status and the thread's last-error message.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_ERROR_H
#define MOERT_SRC_ERROR_H

#include "moert/moert.h"

#include <fmt/format.h>

#include <exception>
#include <string>
#include <utility>

namespace moert {

class Error : public std::exception {
public:
  Error(moert_status status, std::string message);
  const char *what() const noexcept override { return message_.c_str(); }
  moert_status status() const { return status_; }
  const std::string &message() const { return message_; }

private:
  moert_status status_;
  std::string message_;
};

template <typename... Args>
[[noreturn]] void fail(moert_status status, fmt::format_string<Args...> format,
                       Args &&...args) {
  throw Error(status, fmt::format(format, std::forward<Args>(args)...));
}

/// Sets the calling thread's message returned by moert_last_error().
void setLastError(const std::string &message);
const char *lastError();

/// Turns the exception being handled into a status and a last-error message.
/// Call only from a catch block.
moert_status statusFromCurrentException() noexcept;

/// Runs `body` and reports what it throws as a status: the C boundary.
template <typename F> moert_status guard(F &&body) noexcept {
  try {
    body();
    return MOERT_OK;
  } catch (...) {
    return statusFromCurrentException();
  }
}

/// nlohmann's what() without its "[json.exception.parse_error.101] " tag.
std::string jsonErrorText(const char *what);

/// "[2, 3, 4]": shapes in messages.
template <typename Range> std::string formatShape(const Range &shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

} // namespace moert

#endif // MOERT_SRC_ERROR_H
