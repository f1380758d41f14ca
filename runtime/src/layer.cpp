//===- layer.cpp - Opening a layer, running it, its statistics -----------===//

#include "runtime/src/layer.h"

#include "runtime/src/error.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include <dlfcn.h>
#include <sys/stat.h>

namespace moert {

namespace {
/// An MLIR memref descriptor (docs/abi.md) with room for kMaxRank
/// dimensions: sizes in sizesAndStrides[0, R), strides in [R, 2R). A layer
/// reads only the fields of its argument's rank, so the tail is unused.
struct MemRefDescriptor {
  void *allocated;
  void *aligned;
  int64_t offset;
  int64_t sizesAndStrides[2 * kMaxRank];
};

/// A dense row-major descriptor; -1 in `shape` becomes `tokens`.
MemRefDescriptor describe(void *data, const std::vector<int64_t> &shape,
                          int64_t tokens) {
  MemRefDescriptor d{data, data, 0, {}};
  size_t rank = shape.size();
  int64_t stride = 1;
  for (size_t i = rank; i-- > 0;) {
    int64_t size = shape[i] == -1 ? tokens : shape[i];
    d.sizesAndStrides[i] = size;
    d.sizesAndStrides[rank + i] = stride;
    stride *= size;
  }
  return d;
}

void *symbol(void *library, const char *name, const std::string &path) {
  dlerror();
  void *address = dlsym(library, name);
  if (!address)
    fail(MOERT_ERROR_ABI, "{}: not a moec layer (missing symbol {})", path,
         name);
  return address;
}

size_t saturatingMulAdd(size_t a, size_t b, size_t c) {
  size_t r;
  if (__builtin_mul_overflow(a, b, &r) || __builtin_add_overflow(r, c, &r))
    return SIZE_MAX;
  return r;
}
} // namespace

void Layer::LibraryCloser::operator()(void *handle) const { dlclose(handle); }

std::unique_ptr<Layer> Layer::open(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    fail(MOERT_ERROR_IO, "{}: cannot open: {}", path, std::strerror(errno));
  // dlopen searches the library path for a bare name; a user means a file.
  std::string file = path.find('/') == std::string::npos ? "./" + path : path;
  std::unique_ptr<Layer> layer(new Layer());
  layer->path_ = path;
  layer->library_.reset(dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!layer->library_) {
    std::string reason = dlerror();
    if (reason.rfind(file + ": ", 0) == 0) // dlerror repeats the path
      reason.erase(0, file.size() + 2);
    fail(MOERT_ERROR_ABI, "{}: cannot load the layer: {}", path, reason);
  }

  void *library = layer->library_.get();
  auto abiVersion = reinterpret_cast<uint32_t (*)()>(
      symbol(library, "moec_abi_version", path));
  auto metadata = reinterpret_cast<const char *(*)()>(
      symbol(library, "moec_layer_metadata", path));

  uint32_t abi = abiVersion();
  if (abi != MOERT_ABI_VERSION)
    fail(MOERT_ERROR_ABI,
         "{}: layer ABI version {}, runtime supports {} (recompile with this "
         "moec)",
         path, abi, MOERT_ABI_VERSION);
  const char *json = metadata();
  if (!json)
    fail(MOERT_ERROR_FORMAT,
         "{}: invalid metadata: moec_layer_metadata "
         "returned NULL",
         path);
  layer->metadataJson_ = json;
  layer->metadata_ = parseLayerMetadata(layer->metadataJson_, path);
  if (layer->metadata_.abiVersion != abi)
    fail(MOERT_ERROR_FORMAT,
         "{}: invalid metadata: abi_version {} disagrees with "
         "moec_abi_version() = {}",
         path, layer->metadata_.abiVersion, abi);
  // A cuda layer has a kernel image and a launch plan instead of
  // moec_forward; nothing here needs a GPU (cuda_layer.h).
  if (layer->metadata_.device == DeviceKind::Cuda) {
    auto image = reinterpret_cast<const void *(*)(uint64_t *)>(
        symbol(library, "moec_cuda_image", path));
    uint64_t size = 0;
    const void *data = image(&size);
    layer->cuda_ =
        std::make_unique<CudaLayer>(layer->metadata_, data, size, path);
  } else {
    layer->forward_ =
        reinterpret_cast<ForwardFn>(symbol(library, "moec_forward", path));
  }

  if (layer->metadata_.openmp && !layer->cuda_)
    layer->ompSetNumThreads_ = reinterpret_cast<SetThreadsFn>(
        symbol(library, "omp_set_num_threads", path));

  size_t experts = size_t(layer->metadata_.numExperts);
  layer->totalCounts_.assign(experts, 0);
  layer->lastCounts_.assign(experts, 0);
  return layer;
}

Layer::~Layer() = default;

void Layer::setThreads(int n) {
  if (n < 0 || n > kMaxThreads)
    fail(MOERT_ERROR_INVALID_ARGUMENT,
         "thread count {} is out of range [0, {}]", n, kMaxThreads);
  if (n == 0)
    n = int(std::max(1u, std::thread::hardware_concurrency()));
  // Start the new workers before waiting for running calls to finish. An
  // OpenMP layer parallelises inside each call and needs no pool.
  std::unique_ptr<ThreadPool> pool;
  if (n > 1 && !metadata_.openmp)
    pool = std::make_unique<ThreadPool>(unsigned(n - 1));
  std::unique_lock<std::shared_mutex> lock(stateMutex_);
  threads_ = n;
  std::swap(pool_, pool);
  lock.unlock(); // The old pool's idle workers join outside the lock.
}

int64_t Layer::chunkTokens(int64_t tokens) const {
  if (!metadata_.tokenIndependent || tokens == 0)
    return tokens; // One call sees the whole batch (e.g. capacity order).
  if (metadata_.openmp) // Chunks only bound the memory; threads are inside.
    return std::min(kMaxChunkTokens, tokens);
  int64_t perThread = (tokens + threads_ - 1) / threads_;
  return std::min(
      {std::max(perThread, kMinChunkTokens), kMaxChunkTokens, tokens});
}

void Layer::callLayer(const float *x, int64_t tokens, float *y,
                      int64_t *counts) const {
  const std::vector<ArgumentSpec> &args = metadata_.arguments;
  std::vector<MemRefDescriptor> descriptors(args.size());
  std::vector<void *> pointers(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    void *data = nullptr;
    switch (args[i].role) {
    case Role::Input:
      data = const_cast<float *>(x); // The layer only reads its input.
      break;
    case Role::Output:
      data = y;
      break;
    case Role::Stats:
      data = counts;
      break;
    case Role::Weight:
      data = weights_[i].data();
      break;
    }
    descriptors[i] = describe(data, args[i].storageShape, tokens);
    pointers[i] = &descriptors[i];
  }
  forward_(pointers.data());
}

void Layer::checkCall(const char *what, bool xGiven, int64_t tokens,
                      bool yGiven) const {
  if (tokens < 0)
    fail(MOERT_ERROR_INVALID_ARGUMENT, "{}: {}: tokens is {}, must be >= 0",
         path_, what, tokens);
  if (tokens > 0 && (!xGiven || !yGiven))
    fail(MOERT_ERROR_INVALID_ARGUMENT, "{}: {}: x and y must not be NULL",
         path_, what);
  if (tokens > INT64_MAX / metadata_.hiddenSize)
    fail(MOERT_ERROR_INVALID_ARGUMENT,
         "{}: {}: {} tokens overflow the address space", path_, what, tokens);
}

void Layer::forward(const float *x, int64_t tokens, float *y) {
  checkCall("forward", x, tokens, y);
  int64_t hidden = metadata_.hiddenSize, experts = metadata_.numExperts;
  std::shared_lock<std::shared_mutex> lock(stateMutex_);
  if (!weightsLoaded_)
    fail(MOERT_ERROR_STATE,
         "{}: forward called before the weights were "
         "loaded",
         path_);
  if (cuda_) { // One run of the plan, no chunks; threads play no part.
    std::vector<int64_t> counts(size_t(experts), 0);
    if (tokens > 0)
      cuda_->forward(x, tokens, y, counts.data());
    lock.unlock();
    recordStats(counts, tokens);
    return;
  }
  int64_t chunk = chunkTokens(tokens);
  size_t chunks = tokens ? size_t((tokens + chunk - 1) / chunk) : 0;
  std::vector<int64_t> counts(chunks * size_t(experts), 0);
  std::function<void(size_t)> runChunk = [&](size_t c) {
    // OpenMP's thread count is a per-thread setting: set it on the thread
    // that enters the layer.
    if (ompSetNumThreads_)
      ompSetNumThreads_(threads_);
    int64_t start = int64_t(c) * chunk;
    callLayer(x + start * hidden, std::min(chunk, tokens - start),
              y + start * hidden, counts.data() + c * size_t(experts));
  };
  if (pool_ && chunks > 1)
    pool_->parallelFor(chunks, runChunk);
  else
    for (size_t c = 0; c < chunks; ++c)
      runChunk(c);
  lock.unlock();

  std::vector<int64_t> sum(size_t(experts), 0);
  for (size_t c = 0; c < chunks; ++c)
    for (size_t e = 0; e < sum.size(); ++e)
      sum[e] += counts[c * sum.size() + e];
  recordStats(sum, tokens);
}

CudaLayer &Layer::requireCuda(const char *what) const {
  if (!cuda_)
    fail(MOERT_ERROR_INVALID_ARGUMENT,
         "{}: {}: this is a {} layer; only cuda layers run on device memory",
         path_, what, deviceKindName(metadata_.device));
  std::shared_lock<std::shared_mutex> lock(stateMutex_);
  if (!weightsLoaded_)
    fail(MOERT_ERROR_STATE, "{}: {} called before the weights were loaded",
         path_, what);
  return *cuda_;
}

void Layer::forwardCuda(uint64_t x, int64_t tokens, uint64_t y, void *stream) {
  checkCall("forward on the device", x, tokens, y);
  CudaLayer &cuda = requireCuda("forward on the device");
  if (tokens > 0)
    cuda.enqueueForward(x, tokens, y, static_cast<cuda::CUstream>(stream));
}

void Layer::reserveCuda(int64_t tokens) {
  checkCall("reserve", true, tokens, true);
  CudaLayer &cuda = requireCuda("reserve");
  if (tokens > 0)
    cuda.reserve(tokens);
}

size_t Layer::workspaceBytes(int64_t tokens) const {
  if (tokens <= 0)
    return 0;
  if (cuda_) // Device memory: x and the plan's buffers.
    return cuda_->workspaceBytes(tokens);
  std::shared_lock<std::shared_mutex> lock(stateMutex_);
  size_t chunk = size_t(chunkTokens(tokens));
  size_t chunks = (size_t(tokens) + chunk - 1) / chunk;
  size_t concurrent =
      metadata_.openmp ? 1 : std::min(chunks, size_t(threads_));
  size_t perCall = saturatingMulAdd(
      metadata_.workspaceBytesPerToken, chunk,
      saturatingMulAdd(metadata_.workspaceBytesPerThread, size_t(threads_),
                       metadata_.workspaceBytesFixed));
  // The runtime's own: per-chunk expert counts, per-call descriptors.
  size_t own = chunks * size_t(metadata_.numExperts) * sizeof(int64_t) +
               concurrent * metadata_.arguments.size() *
                   (sizeof(MemRefDescriptor) + sizeof(void *));
  return saturatingMulAdd(perCall, concurrent, own);
}

void Layer::recordStats(const std::vector<int64_t> &counts, int64_t tokens) {
  std::lock_guard<std::mutex> lock(statsMutex_);
  for (size_t e = 0; e < counts.size(); ++e)
    totalCounts_[e] += counts[e];
  std::copy(counts.begin(), counts.end(), lastCounts_.begin());
  totalTokens_ += tokens;
  lastTokens_ = tokens;
}

void Layer::stats(int64_t *tokensPerExpert, int64_t *tokens) const {
  std::lock_guard<std::mutex> lock(statsMutex_);
  if (tokensPerExpert)
    std::copy(totalCounts_.begin(), totalCounts_.end(), tokensPerExpert);
  if (tokens)
    *tokens = totalTokens_;
}

void Layer::lastStats(int64_t *tokensPerExpert, int64_t *tokens) const {
  std::lock_guard<std::mutex> lock(statsMutex_);
  if (tokensPerExpert)
    std::copy(lastCounts_.begin(), lastCounts_.end(), tokensPerExpert);
  if (tokens)
    *tokens = lastTokens_;
}

void Layer::resetStats() {
  std::lock_guard<std::mutex> lock(statsMutex_);
  std::fill(totalCounts_.begin(), totalCounts_.end(), 0);
  std::fill(lastCounts_.begin(), lastCounts_.end(), 0);
  totalTokens_ = lastTokens_ = 0;
}

} // namespace moert
