//===- safetensors.cpp - A strict, mmap-based safetensors reader ---------===//

#include "runtime/src/safetensors.h"

#include "runtime/src/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <tuple>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace moert {

using json = nlohmann::json;

namespace {
struct DTypeEntry {
  DType dtype;
  std::string_view name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::Bool, "BOOL", 1},      {DType::U8, "U8", 1},
    {DType::I8, "I8", 1},          {DType::F8E4M3, "F8_E4M3", 1},
    {DType::F8E5M2, "F8_E5M2", 1}, {DType::F8E8M0, "F8_E8M0", 1},
    {DType::U16, "U16", 2},        {DType::I16, "I16", 2},
    {DType::F16, "F16", 2},        {DType::BF16, "BF16", 2},
    {DType::U32, "U32", 4},        {DType::I32, "I32", 4},
    {DType::F32, "F32", 4},        {DType::U64, "U64", 8},
    {DType::I64, "I64", 8},        {DType::F64, "F64", 8},
};

const DTypeEntry &entryFor(DType dtype) {
  for (const DTypeEntry &e : kDTypes)
    if (e.dtype == dtype)
      return e;
  throw Error(MOERT_ERROR_INTERNAL, "unknown DType enumerator");
}

bool isUnsignedList(const json &value) {
  return value.is_array() &&
         std::all_of(value.begin(), value.end(), [](const json &v) {
           return v.is_number_unsigned() &&
                  v.get<uint64_t>() <= uint64_t(INT64_MAX);
         });
}

/// Closes a file descriptor on every path out of open().
struct FileDescriptor {
  int fd;
  ~FileDescriptor() {
    if (fd >= 0)
      ::close(fd);
  }
};
} // namespace

std::optional<DType> parseDType(std::string_view name) {
  for (const DTypeEntry &e : kDTypes)
    if (e.name == name)
      return e.dtype;
  return std::nullopt;
}

std::string_view dtypeName(DType dtype) { return entryFor(dtype).name; }
size_t dtypeSize(DType dtype) { return entryFor(dtype).size; }

uint64_t TensorInfo::numElements() const {
  uint64_t n = 1;
  for (int64_t d : shape)
    n *= uint64_t(d); // Cannot overflow: checked when the header was parsed.
  return n;
}

SafetensorsFile SafetensorsFile::open(const std::string &path) {
  SafetensorsFile file;
  file.path_ = path;
  FileDescriptor fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.fd < 0)
    fail(MOERT_ERROR_IO, "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st;
  if (::fstat(fd.fd, &st) != 0)
    fail(MOERT_ERROR_IO, "{}: cannot stat: {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    fail(MOERT_ERROR_IO, "{}: not a regular file", path);
  uint64_t size = uint64_t(st.st_size);
  if (size < 8)
    fail(MOERT_ERROR_FORMAT,
         "{}: file is truncated: {} bytes, less than the 8-byte header length",
         path, size);

  void *base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (base == MAP_FAILED)
    fail(MOERT_ERROR_IO, "{}: cannot map: {}", path, std::strerror(errno));
  file.mapping_ = base;
  file.mappedSize_ = size;

  auto *bytes = static_cast<const unsigned char *>(base);
  uint64_t headerSize = 0;
  for (int i = 7; i >= 0; --i)
    headerSize = (headerSize << 8) | bytes[i];
  if (headerSize > kMaxSafetensorsHeaderBytes)
    fail(MOERT_ERROR_FORMAT,
         "{}: corrupt header: header length {} exceeds the {}-byte limit "
         "(not a safetensors file?)",
         path, headerSize, kMaxSafetensorsHeaderBytes);
  if (headerSize > size - 8)
    fail(MOERT_ERROR_FORMAT,
         "{}: file is truncated or its header is corrupt: header length {} "
         "exceeds the {} bytes that follow it",
         path, headerSize, size - 8);
  file.dataArea_ = bytes + 8 + headerSize;
  file.dataSize_ = size - 8 - headerSize;
  file.parseHeader(std::string_view(reinterpret_cast<const char *>(bytes + 8),
                                    size_t(headerSize)));
  file.checkOverlaps();
  return file;
}

void SafetensorsFile::parseHeader(std::string_view text) {
  // nlohmann keeps the last of duplicate keys; spot them while parsing.
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t onEvent = [&](int depth, json::parse_event_t event,
                                        json &parsed) {
    if (event == json::parse_event_t::key && depth == 1 &&
        !seen.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(text.begin(), text.end(), onEvent);
  } catch (const json::exception &e) {
    fail(MOERT_ERROR_FORMAT, "{}: corrupt header: invalid JSON: {}", path_,
         jsonErrorText(e.what()));
  }
  if (!header.is_object())
    fail(MOERT_ERROR_FORMAT,
         "{}: corrupt header: expected a JSON object, "
         "found {}",
         path_, header.type_name());
  if (!duplicate.empty())
    fail(MOERT_ERROR_FORMAT, "{}: corrupt header: tensor '{}' appears twice",
         path_, duplicate);

  for (const auto &item : header.items()) {
    const std::string &name = item.key();
    const json &entry = item.value();
    if (name == "__metadata__") // Free-form strings; nothing here uses them.
      continue;
    auto bad = [&](std::string_view what) {
      fail(MOERT_ERROR_FORMAT, "{}: corrupt header: tensor '{}' {}", path_,
           name, what);
    };
    if (!entry.is_object())
      bad("is not an object");
    auto dtypeField = entry.find("dtype");
    auto shapeField = entry.find("shape");
    auto offsetsField = entry.find("data_offsets");
    if (dtypeField == entry.end() || !dtypeField->is_string())
      bad("has no string 'dtype'");
    if (shapeField == entry.end() || !isUnsignedList(*shapeField))
      bad("has no 'shape' list of non-negative integers");
    if (offsetsField == entry.end() || !isUnsignedList(*offsetsField) ||
        offsetsField->size() != 2)
      bad("has no 'data_offsets' pair of non-negative integers");

    std::string dtypeText = dtypeField->get<std::string>();
    std::optional<DType> dtype = parseDType(dtypeText);
    if (!dtype)
      fail(MOERT_ERROR_FORMAT, "{}: tensor '{}' has unknown dtype '{}'", path_,
           name, dtypeText);
    TensorInfo info{*dtype, shapeField->get<std::vector<int64_t>>(),
                    (*offsetsField)[0].get<uint64_t>(),
                    (*offsetsField)[1].get<uint64_t>()};

    uint64_t bytes = dtypeSize(info.dtype);
    for (int64_t d : info.shape)
      if (__builtin_mul_overflow(bytes, uint64_t(d), &bytes))
        bad(fmt::format("has a shape {} too large to address",
                        formatShape(info.shape)));
    if (info.begin > info.end)
      bad(fmt::format("has data_offsets [{}, {}] that end before they begin",
                      info.begin, info.end));
    if (info.end - info.begin != bytes)
      bad(fmt::format("has dtype {} and shape {} ({} bytes) but data_offsets "
                      "[{}, {}] span {} bytes",
                      dtypeText, formatShape(info.shape), bytes, info.begin,
                      info.end, info.end - info.begin));
    if (info.end > dataSize_)
      fail(MOERT_ERROR_FORMAT,
           "{}: file is truncated: tensor '{}' ends at byte {} of the data "
           "but only {} bytes of data follow the header",
           path_, name, info.end, dataSize_);
    tensors_.emplace(name, std::move(info));
  }
}

void SafetensorsFile::checkOverlaps() const {
  std::vector<std::pair<const std::string *, const TensorInfo *>> byOffset;
  for (const auto &[name, info] : tensors_)
    if (info.begin != info.end)
      byOffset.emplace_back(&name, &info);
  std::sort(byOffset.begin(), byOffset.end(), [](const auto &a, const auto &b) {
    return std::tie(a.second->begin, *a.first) <
           std::tie(b.second->begin, *b.first);
  });
  // Sorted by start, some overlap exists iff some neighbours overlap.
  for (size_t i = 1; i < byOffset.size(); ++i) {
    const auto &[prevName, prev] = byOffset[i - 1];
    const auto &[name, info] = byOffset[i];
    if (prev->end > info->begin)
      fail(MOERT_ERROR_FORMAT,
           "{}: corrupt header: tensors '{}' [{}, {}] and '{}' [{}, {}] "
           "overlap",
           path_, *prevName, prev->begin, prev->end, *name, info->begin,
           info->end);
  }
}

SafetensorsFile::SafetensorsFile(SafetensorsFile &&other) noexcept {
  *this = std::move(other);
}

SafetensorsFile &SafetensorsFile::operator=(SafetensorsFile &&other) noexcept {
  if (this != &other) {
    if (mapping_)
      ::munmap(mapping_, mappedSize_);
    path_ = std::move(other.path_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mappedSize_ = std::exchange(other.mappedSize_, 0);
    dataArea_ = std::exchange(other.dataArea_, nullptr);
    dataSize_ = std::exchange(other.dataSize_, 0);
    tensors_ = std::move(other.tensors_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_)
    ::munmap(mapping_, mappedSize_);
}

const TensorInfo *SafetensorsFile::find(const std::string &name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const unsigned char *SafetensorsFile::data(const TensorInfo &tensor) const {
  return dataArea_ + tensor.begin;
}

} // namespace moert
