//===- weights.cpp - Filling a layer's weights from safetensors ----------===//
//
// All tensors are found and checked before any is converted, so a bad
// checkpoint fails fast and leaves the weights loaded earlier in place. Each
// tensor is converted to the argument's format and, for the panel layout,
// packed on the way. A cuda layer's weights are then uploaded to the device
// (cuda_layer.h) and not kept on the host.
//
//===----------------------------------------------------------------------===//

#include "runtime/src/convert.h"
#include "runtime/src/error.h"
#include "runtime/src/layer.h"
#include "runtime/src/safetensors.h"
#include "runtime/src/weights.h"

#include <algorithm>
#include <cstring>
#include <functional>

namespace moert {

namespace {
/// One checkpoint tensor to convert into (part of) an argument's buffer.
struct Piece {
  const TensorInfo *tensor;
  size_t argument;
  size_t offset; // in elements of the argument's storage
};

std::string replaceAll(std::string text, const std::string &from,
                       const std::string &to) {
  for (size_t at = 0; (at = text.find(from, at)) != std::string::npos;
       at += to.size())
    text.replace(at, from.size(), to);
  return text;
}

/// " (found 'gate.weight' under the prefix 'model.layers.1.mlp.')" when the
/// relative name exists under other prefixes: most often a wrong prefix.
std::string prefixHint(const SafetensorsFile &file, const std::string &name) {
  std::vector<std::string> prefixes;
  for (const auto &entry : file.tensors()) {
    const std::string &candidate = entry.first;
    if (candidate.size() < name.size() ||
        candidate.compare(candidate.size() - name.size(), name.size(), name))
      continue;
    std::string prefix = candidate.substr(0, candidate.size() - name.size());
    if (prefix.empty() || prefix.back() == '.')
      prefixes.push_back(fmt::format("'{}'", prefix));
  }
  if (prefixes.empty())
    return "";
  size_t shown = std::min<size_t>(prefixes.size(), 3);
  std::string list = fmt::format(
      "{}", fmt::join(prefixes.begin(), prefixes.begin() + shown, ", "));
  if (prefixes.size() > shown)
    list += fmt::format(" and {} more", prefixes.size() - shown);
  return fmt::format(" (found '{}' under the prefix{} {})", name,
                     prefixes.size() > 1 ? "es" : "", list);
}

const TensorInfo &findTensor(const SafetensorsFile &file,
                             const std::string &prefix, const std::string &name,
                             const std::vector<int64_t> &shape) {
  const TensorInfo *tensor = file.find(prefix + name);
  if (!tensor)
    fail(MOERT_ERROR_MISMATCH, "{}: missing tensor '{}'{}", file.path(),
         prefix + name, prefixHint(file, name));
  if (tensor->dtype != DType::F32 && tensor->dtype != DType::BF16 &&
      tensor->dtype != DType::F16)
    fail(MOERT_ERROR_MISMATCH,
         "{}: tensor '{}' has dtype {}; weights must be F32, BF16 or F16",
         file.path(), prefix + name, dtypeName(tensor->dtype));
  if (tensor->shape != shape)
    fail(MOERT_ERROR_MISMATCH, "{}: tensor '{}' has shape {}, expected {}",
         file.path(), prefix + name, formatShape(tensor->shape),
         formatShape(shape));
  return *tensor;
}

FloatFormat formatOf(DType dtype) {
  switch (dtype) {
  case DType::F32:
    return FloatFormat::F32;
  case DType::BF16:
    return FloatFormat::BF16;
  case DType::F16:
    return FloatFormat::F16;
  default:
    throw Error(MOERT_ERROR_INTERNAL, "unchecked weight dtype");
  }
}

FloatFormat formatOf(ElementType type) {
  switch (type) {
  case ElementType::F32:
    return FloatFormat::F32;
  case ElementType::BF16:
    return FloatFormat::BF16;
  case ElementType::F16:
    return FloatFormat::F16;
  case ElementType::I64:
    break;
  }
  throw Error(MOERT_ERROR_INTERNAL, "unchecked weight element type");
}

size_t product(std::vector<int64_t>::const_iterator begin,
               std::vector<int64_t>::const_iterator end) {
  size_t n = 1;
  for (; begin != end; ++begin)
    n *= size_t(*begin);
  return n;
}

/// One panel: block[b][j * K + k] = rows[j][b * K + k] for the `count` rows
/// (of `in` elements) the panel holds, zero for the padding rows (j >=
/// count) and inputs (b * K + k >= in). Writes `block` in order.
template <typename T, int64_t K>
void interleave(const T *rows, int64_t count, int64_t in, int64_t panel,
                T *block) {
  int64_t full = in / K, blocks = full + (in % K != 0);
  for (int64_t b = 0; b < full; ++b) {
    const T *column = rows + b * K;
    for (int64_t j = 0; j < count; ++j)
      for (int64_t k = 0; k < K; ++k)
        *block++ = column[j * in + k];
    for (int64_t j = count * K; j < panel * K; ++j)
      *block++ = T(0);
  }
  for (int64_t b = full; b < blocks; ++b) // the partial pair of inputs
    for (int64_t j = 0; j < panel; ++j)
      for (int64_t k = 0; k < K; ++k) {
        int64_t i = b * K + k;
        *block++ = j < count && i < in ? rows[j * in + i] : T(0);
      }
}

template <typename T>
void interleave(const unsigned char *rows, int64_t count, int64_t in,
                int64_t panel, int64_t kPack, unsigned char *block) {
  const T *from = reinterpret_cast<const T *>(rows);
  T *to = reinterpret_cast<T *>(block);
  if (kPack == 2)
    interleave<T, 2>(from, count, in, panel, to);
  else if (kPack == 1)
    interleave<T, 1>(from, count, in, panel, to);
  else
    throw Error(MOERT_ERROR_INTERNAL, "unchecked k_pack");
}
} // namespace

void packPanels(FloatFormat from, const void *src, FloatFormat to, void *dst,
                const std::vector<int64_t> &shape, int64_t panel,
                int64_t kPack) {
  int64_t out = shape[shape.size() - 2], in = shape.back();
  std::vector<int64_t> packed = panelShape(shape, panel, kPack);
  int64_t panels = packed[packed.size() - 3];
  size_t lead = product(shape.begin(), shape.end() - 2);
  size_t fromSize = formatSize(from), toSize = formatSize(to);
  // One panel of the destination, in elements.
  size_t block = size_t(packed[packed.size() - 2] * packed.back());
  auto *source = static_cast<const unsigned char *>(src);
  auto *target = static_cast<unsigned char *>(dst);
  std::vector<unsigned char> rows(size_t(panel * in) * toSize);
  for (size_t l = 0; l < lead; ++l)
    for (int64_t p = 0; p < panels; ++p) {
      int64_t first = p * panel, count = std::min(panel, out - first);
      convertFloats(from, source + (l * out + first) * in * fromSize, to,
                    rows.data(), size_t(count * in));
      unsigned char *panelAt = target + (l * panels + p) * block * toSize;
      if (toSize == 4)
        interleave<uint32_t>(rows.data(), count, in, panel, kPack, panelAt);
      else
        interleave<uint16_t>(rows.data(), count, in, panel, kPack, panelAt);
    }
}

namespace {
void convert(const SafetensorsFile &file, const Piece &piece,
             const ArgumentSpec &arg, unsigned char *buffer) {
  FloatFormat from = formatOf(piece.tensor->dtype), to = formatOf(arg.dtype);
  const unsigned char *src = file.data(*piece.tensor);
  unsigned char *dst = buffer + piece.offset * formatSize(to);
  if (arg.panel)
    packPanels(from, src, to, dst, piece.tensor->shape, arg.panel, arg.kPack);
  else
    convertFloats(from, src, to, dst, size_t(piece.tensor->numElements()));
}
} // namespace

std::vector<AlignedBuffer>
Layer::packWeights(const SafetensorsFile &file, const std::string &prefix,
                   const std::function<void()> &afterChecks) const {
  const std::vector<ArgumentSpec> &args = metadata_.arguments;
  std::vector<Piece> pieces;
  for (size_t i = 0; i < args.size(); ++i) {
    const ArgumentSpec &arg = args[i];
    if (arg.role != Role::Weight)
      continue;
    if (!arg.stacked) {
      pieces.push_back({&findTensor(file, prefix, arg.name, arg.shape), i, 0});
      continue;
    }
    std::vector<int64_t> shape(arg.shape.begin() + 1, arg.shape.end());
    size_t stride =
        product(arg.storageShape.begin() + 1, arg.storageShape.end());
    for (int64_t e = 0; e < arg.shape[0]; ++e) {
      std::string name = replaceAll(arg.name, "{e}", std::to_string(e));
      pieces.push_back(
          {&findTensor(file, prefix, name, shape), i, size_t(e) * stride});
    }
  }

  if (afterChecks)
    afterChecks();

  std::vector<AlignedBuffer> buffers(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].role != Role::Weight)
      continue;
    // The tensors were checked, so this is about their size (panels add at
    // most one partial panel per matrix, and k_pack one padding input).
    size_t bytes =
        product(args[i].storageShape.begin(), args[i].storageShape.end()) *
        formatSize(formatOf(args[i].dtype));
    try {
      buffers[i] = AlignedBuffer(bytes);
    } catch (const std::bad_alloc &) {
      fail(MOERT_ERROR_OUT_OF_MEMORY,
           "{}: out of memory allocating {} bytes for weight '{}'", file.path(),
           bytes, args[i].name);
    }
  }

  std::function<void(size_t)> convertPiece = [&](size_t p) {
    size_t arg = pieces[p].argument;
    convert(file, pieces[p], args[arg], buffers[arg].data());
  };
  std::shared_lock<std::shared_mutex> lock(stateMutex_);
  if (pool_)
    pool_->parallelFor(pieces.size(), convertPiece);
  else
    for (size_t p = 0; p < pieces.size(); ++p)
      convertPiece(p);
  return buffers;
}

void Layer::loadWeights(const std::string &safetensorsPath,
                        const std::string &prefix) {
  SafetensorsFile file = SafetensorsFile::open(safetensorsPath);
  if (cuda_) {
    // The checkpoint is checked first, then the device is set up (once),
    // then the weights are converted on the host and uploaded; the host
    // copies go when this returns.
    std::vector<AlignedBuffer> host =
        packWeights(file, prefix, [&] { cuda_->prepare(); });
    cuda_->setWeights(host);
    std::unique_lock<std::shared_mutex> lock(stateMutex_);
    weightsLoaded_ = true;
    return;
  }
  std::vector<AlignedBuffer> buffers = packWeights(file, prefix, {});
  std::unique_lock<std::shared_mutex> lock(stateMutex_);
  std::swap(weights_, buffers);
  weightsLoaded_ = true;
  lock.unlock(); // The old weights are freed outside the lock.
}

} // namespace moert
