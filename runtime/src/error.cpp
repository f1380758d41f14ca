//===- error.cpp - Errors inside libmoert and at its C boundary ----------===//

#include "runtime/src/error.h"

#include <new>
#include <string_view>
#include <system_error>

namespace moert {

namespace {
thread_local std::string lastErrorMessage;

/// The API promises one-line messages; an OS string (dlerror) may not be one.
std::string oneLine(std::string message) {
  for (char &c : message)
    if (c == '\n' || c == '\r')
      c = ' ';
  return message;
}
} // namespace

Error::Error(moert_status status, std::string message)
    : status_(status), message_(oneLine(std::move(message))) {}

void setLastError(const std::string &message) {
  try {
    lastErrorMessage = oneLine(message);
  } catch (...) {
    lastErrorMessage.clear(); // Out of memory: an empty message beats none.
  }
}

namespace {
void setLastError(const char *prefix, const char *detail) {
  try {
    moert::setLastError(std::string(prefix) + detail);
  } catch (...) {
    lastErrorMessage.clear();
  }
}
} // namespace

const char *lastError() { return lastErrorMessage.c_str(); }

std::string jsonErrorText(const char *what) {
  std::string_view text = what;
  size_t end = text.find("] ");
  if (!text.empty() && text[0] == '[' && end != std::string_view::npos)
    text.remove_prefix(end + 2);
  return std::string(text);
}

moert_status statusFromCurrentException() noexcept {
  try {
    throw;
  } catch (const Error &e) {
    setLastError(e.message());
    return e.status();
  } catch (const std::bad_alloc &) {
    setLastError("out of memory", "");
    return MOERT_ERROR_OUT_OF_MEMORY;
  } catch (const std::system_error &e) {
    setLastError("system error: ", e.what());
    return MOERT_ERROR_INTERNAL;
  } catch (const std::exception &e) {
    setLastError("internal error: ", e.what());
    return MOERT_ERROR_INTERNAL;
  } catch (...) {
    setLastError("internal error: unknown exception", "");
    return MOERT_ERROR_INTERNAL;
  }
}

} // namespace moert
