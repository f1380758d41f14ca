//===- npy.cpp - float32 .npy files (NumPy format 1.0-3.0) ---------------===//
//
// The header is a Python dict literal, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (7, 64), }
// parsed here by a small strict parser for the subset NumPy writes.
//
//===----------------------------------------------------------------------===//

#include "runtime/src/npy.h"

#include "runtime/src/error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string_view>

#include <sys/stat.h>

namespace moert {

namespace {
constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
constexpr uint64_t kMaxHeaderBytes = 1 << 20;

struct HeaderValue {
  enum Kind { String, Bool, Tuple, Other } kind = Other;
  std::string text;
  bool flag = false;
  std::vector<int64_t> ints;
};

/// Parses the dict literal; throws a message fragment (without the path).
class HeaderParser {
public:
  explicit HeaderParser(std::string_view text) : text_(text) {}

  std::map<std::string, HeaderValue> parseDict() {
    std::map<std::string, HeaderValue> dict;
    expect('{');
    while (!peek('}')) {
      std::string key = parseString();
      expect(':');
      dict[key] = parseValue();
      if (!peek('}'))
        expect(',');
    }
    expect('}');
    skipSpace();
    if (pos_ != text_.size())
      throw std::string("unexpected text after the dict");
    return dict;
  }

private:
  void skipSpace() {
    while (pos_ < text_.size() && std::strchr(" \t\n\r", text_[pos_]))
      ++pos_;
  }
  bool peek(char c) {
    skipSpace();
    return pos_ < text_.size() && text_[pos_] == c;
  }
  void expect(char c) {
    if (!peek(c))
      throw fmt::format("expected '{}' at offset {}", c, pos_);
    ++pos_;
  }
  bool consumeWord(std::string_view word) {
    skipSpace();
    if (text_.substr(pos_, word.size()) != word)
      return false;
    pos_ += word.size();
    return true;
  }
  std::string parseString() {
    skipSpace();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"'))
      throw fmt::format("expected a string at offset {}", pos_);
    char quote = text_[pos_++];
    size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos)
      throw std::string("unterminated string");
    std::string s(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }
  int64_t parseInt() {
    skipSpace();
    int64_t value = 0;
    size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      if (__builtin_mul_overflow(value, 10, &value) ||
          __builtin_add_overflow(value, text_[pos_] - '0', &value))
        throw std::string("shape dimension out of range");
      ++pos_;
    }
    if (pos_ == start)
      throw fmt::format("expected a non-negative integer at offset {}", pos_);
    if (pos_ < text_.size() && text_[pos_] == 'L') // Python 2 longs.
      ++pos_;
    return value;
  }
  /// Skips a bracketed value NumPy may write for dtypes not read here.
  void skipBracketed() {
    int depth = 0;
    do {
      if (pos_ >= text_.size())
        throw std::string("unbalanced brackets");
      char c = text_[pos_++];
      if (c == '[' || c == '(')
        ++depth;
      else if (c == ']' || c == ')')
        --depth;
      else if (c == '\'' || c == '"') {
        size_t end = text_.find(c, pos_);
        if (end == std::string_view::npos)
          throw std::string("unterminated string");
        pos_ = end + 1;
      }
    } while (depth > 0);
  }
  HeaderValue parseValue() {
    HeaderValue v;
    if (peek('\'') || peek('"')) {
      v.kind = HeaderValue::String;
      v.text = parseString();
    } else if (consumeWord("True")) {
      v.kind = HeaderValue::Bool;
      v.flag = true;
    } else if (consumeWord("False")) {
      v.kind = HeaderValue::Bool;
    } else if (peek('(')) {
      v.kind = HeaderValue::Tuple;
      expect('(');
      while (!peek(')')) {
        v.ints.push_back(parseInt());
        if (!peek(')'))
          expect(',');
      }
      expect(')');
    } else if (peek('[')) {
      skipBracketed(); // e.g. a structured descr: kind Other.
    } else {
      throw fmt::format("unexpected value at offset {}", pos_);
    }
    return v;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

/// "float64" for "<f8": for messages about the wrong dtype.
std::string describeDescr(const HeaderValue &descr) {
  if (descr.kind != HeaderValue::String)
    return "a structured dtype";
  const std::string &d = descr.text;
  static const std::map<char, const char *> kinds = {
      {'f', "float"}, {'i', "int"},      {'u', "uint"},     {'c', "complex"},
      {'b', "bool"},  {'V', "void"},     {'O', "object"},   {'U', "str"},
      {'S', "bytes"}, {'M', "datetime"}, {'m', "timedelta"}};
  if (d.size() < 3 || !std::strchr("<>|=", d[0]) || !kinds.count(d[1]))
    return fmt::format("'{}'", d);
  std::string bits = d.substr(2);
  if (bits.size() <= 2 &&
      bits.find_first_not_of("0123456789") == std::string::npos &&
      std::strchr("fiuc", d[1]))
    bits = std::to_string(std::stoi(bits) * 8);
  return fmt::format("{}{}{} ('{}')", d[0] == '>' ? "big-endian " : "",
                     kinds.at(d[1]), d[1] == 'b' ? "" : bits, d);
}

struct FileCloser {
  void operator()(std::FILE *f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

void readExactly(std::FILE *f, void *dst, size_t bytes, const std::string &path,
                 const char *what) {
  if (std::fread(dst, 1, bytes, f) == bytes)
    return;
  if (std::ferror(f))
    fail(MOERT_ERROR_IO, "{}: read error: {}", path, std::strerror(errno));
  fail(MOERT_ERROR_FORMAT, "{}: file is truncated in the {}", path, what);
}

const HeaderValue &field(const std::map<std::string, HeaderValue> &dict,
                         const std::string &key, const std::string &path) {
  auto it = dict.find(key);
  if (it == dict.end())
    fail(MOERT_ERROR_FORMAT, "{}: corrupt .npy header: no '{}' key", path, key);
  return it->second;
}
} // namespace

NpyArray readNpyF32(const std::string &path, size_t rank) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f)
    fail(MOERT_ERROR_IO, "{}: cannot open: {}", path, std::strerror(errno));

  unsigned char prefix[kMagicSize + 2];
  if (std::fread(prefix, 1, sizeof prefix, f.get()) != sizeof prefix ||
      std::memcmp(prefix, kMagic, kMagicSize) != 0)
    fail(MOERT_ERROR_FORMAT, "{}: not a .npy file (bad magic)", path);
  unsigned major = prefix[6], minor = prefix[7];
  if (major < 1 || major > 3)
    fail(MOERT_ERROR_FORMAT, "{}: unsupported .npy format version {}.{}", path,
         major, minor);
  unsigned char lengthBytes[4] = {0, 0, 0, 0};
  size_t lengthSize = major == 1 ? 2 : 4;
  readExactly(f.get(), lengthBytes, lengthSize, path, "header");
  uint64_t headerSize = lengthBytes[0] | lengthBytes[1] << 8 |
                        uint64_t(lengthBytes[2]) << 16 |
                        uint64_t(lengthBytes[3]) << 24;
  if (headerSize > kMaxHeaderBytes)
    fail(MOERT_ERROR_FORMAT, "{}: corrupt .npy header: length {} is too large",
         path, headerSize);
  std::string header(headerSize, '\0');
  readExactly(f.get(), header.data(), header.size(), path, "header");

  std::map<std::string, HeaderValue> dict;
  try {
    dict = HeaderParser(header).parseDict();
  } catch (const std::string &problem) {
    fail(MOERT_ERROR_FORMAT, "{}: corrupt .npy header: {}", path, problem);
  }
  const HeaderValue &descr = field(dict, "descr", path);
  const HeaderValue &fortran = field(dict, "fortran_order", path);
  const HeaderValue &shape = field(dict, "shape", path);
  if (fortran.kind != HeaderValue::Bool || shape.kind != HeaderValue::Tuple)
    fail(MOERT_ERROR_FORMAT,
         "{}: corrupt .npy header: 'fortran_order' must be "
         "a bool and 'shape' a tuple",
         path);

  if (descr.kind != HeaderValue::String || descr.text != "<f4")
    fail(MOERT_ERROR_MISMATCH, "{}: dtype is {}, expected float32 ('<f4')",
         path, describeDescr(descr));
  if (fortran.flag && shape.ints.size() > 1)
    fail(MOERT_ERROR_MISMATCH,
         "{}: array is in Fortran (column-major) order; save it in C order",
         path);
  if (shape.ints.size() != rank)
    fail(MOERT_ERROR_MISMATCH, "{}: array has rank {} (shape {}), expected {}",
         path, shape.ints.size(), formatShape(shape.ints), rank);

  uint64_t count = 1;
  for (int64_t d : shape.ints)
    if (__builtin_mul_overflow(count, uint64_t(d), &count) ||
        count > (uint64_t(1) << 60))
      fail(MOERT_ERROR_FORMAT, "{}: shape {} is too large", path,
           formatShape(shape.ints));
  // A header may promise more data than the file holds: check before
  // allocating, so that a small corrupt file cannot claim gigabytes.
  struct stat st;
  long at = std::ftell(f.get());
  if (::fstat(::fileno(f.get()), &st) == 0 && S_ISREG(st.st_mode) && at >= 0) {
    uint64_t left = uint64_t(st.st_size) > uint64_t(at)
                        ? uint64_t(st.st_size) - uint64_t(at)
                        : 0;
    if (left / sizeof(float) < count)
      fail(MOERT_ERROR_FORMAT,
           "{}: file is truncated: shape {} needs {} bytes of data, found {}",
           path, formatShape(shape.ints), count * sizeof(float),
           left / sizeof(float) * sizeof(float));
  }
  NpyArray array;
  array.shape = shape.ints;
  array.data.resize(count);
  size_t got =
      count ? std::fread(array.data.data(), sizeof(float), count, f.get()) : 0;
  if (got != count) {
    if (std::ferror(f.get()))
      fail(MOERT_ERROR_IO, "{}: read error: {}", path, std::strerror(errno));
    fail(MOERT_ERROR_FORMAT,
         "{}: file is truncated: shape {} needs {} bytes of data, found {}",
         path, formatShape(shape.ints), count * sizeof(float),
         got * sizeof(float));
  }
  return array;
}

void writeNpyF32(const std::string &path, const float *data,
                 const std::vector<int64_t> &shape) {
  std::string dims;
  for (int64_t d : shape)
    dims += fmt::format("{}, ", d);
  if (shape.size() > 1)
    dims.resize(dims.size() - 2); // (7, 64) but (7,) for rank 1
  else if (shape.size() == 1)
    dims.pop_back();
  std::string header = fmt::format(
      "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims);

  // Pad so that the data starts at a multiple of 64 bytes, as NumPy does.
  bool v1 = header.size() + 1 + 64 <= 0xffff;
  size_t prefixSize = kMagicSize + 2 + (v1 ? 2 : 4);
  header.append(63 - (prefixSize + header.size()) % 64, ' ');
  header += '\n';
  std::string prefix(kMagic, kMagicSize);
  prefix += char(v1 ? 1 : 2);
  prefix += char(0);
  for (size_t i = 0; i < (v1 ? 2u : 4u); ++i)
    prefix += char((header.size() >> (8 * i)) & 0xff);

  uint64_t count = 1;
  for (int64_t d : shape)
    count *= uint64_t(d);
  File f(std::fopen(path.c_str(), "wb"));
  if (!f)
    fail(MOERT_ERROR_IO, "{}: cannot create: {}", path, std::strerror(errno));
  bool ok =
      std::fwrite(prefix.data(), 1, prefix.size(), f.get()) == prefix.size() &&
      std::fwrite(header.data(), 1, header.size(), f.get()) == header.size() &&
      (count == 0 || std::fwrite(data, sizeof(float), count, f.get()) == count);
  int closeStatus = std::fclose(f.release());
  if (!ok || closeStatus != 0)
    fail(MOERT_ERROR_IO, "{}: write error: {}", path, std::strerror(errno));
}

} // namespace moert
