//===- cuda_layer.cpp - Running a cuda layer's launch plan ---------------===//

#include "runtime/src/cuda_layer.h"

#include "runtime/src/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <string_view>

namespace moert {

namespace {
constexpr uint32_t kFatbinMagic = 0xba55ed50;
constexpr size_t kFatbinHeaderBytes = 16; // magic, version, size, fat size
/// Device pointers this aligned are passed to the kernels as they are.
constexpr uint64_t kDirectAlignment = 16;

/// Checks that `image` is what docs/abi.md promises: a 16-byte aligned
/// fatbin whose header fits the reported size.
void checkImage(const void *image, uint64_t size, const std::string &origin) {
  if (!image)
    fail(MOERT_ERROR_ABI, "{}: moec_cuda_image returned no image", origin);
  if (size < kFatbinHeaderBytes)
    fail(MOERT_ERROR_ABI,
         "{}: its CUDA image is {} bytes, too small for a "
         "fatbin",
         origin, size);
  if (reinterpret_cast<uintptr_t>(image) % 16 != 0)
    fail(MOERT_ERROR_ABI, "{}: its CUDA image is not 16-byte aligned", origin);
  uint32_t magic;
  uint16_t headerBytes;
  uint64_t fatBytes;
  const unsigned char *bytes = static_cast<const unsigned char *>(image);
  std::memcpy(&magic, bytes, 4);
  std::memcpy(&headerBytes, bytes + 6, 2);
  std::memcpy(&fatBytes, bytes + 8, 8);
  if (magic != kFatbinMagic)
    fail(MOERT_ERROR_ABI,
         "{}: its CUDA image is not a fatbin (magic {:#x}, expected {:#x})",
         origin, magic, kFatbinMagic);
  if (headerBytes < kFatbinHeaderBytes || fatBytes > size - headerBytes)
    fail(MOERT_ERROR_ABI,
         "{}: its CUDA image's fatbin header claims {} + {} bytes, the image "
         "has {}",
         origin, headerBytes, fatBytes, size);
}

/// Appends a memref descriptor's parameters (docs/abi.md, "CUDA layers"):
/// allocated and aligned pointer, offset 0, sizes, row-major strides.
void appendDescriptor(std::vector<uint64_t> &values, cuda::CUdeviceptr ptr,
                      const std::vector<int64_t> &sizes) {
  values.push_back(ptr);
  values.push_back(ptr);
  values.push_back(0);
  for (int64_t size : sizes)
    values.push_back(uint64_t(size));
  size_t first = values.size();
  values.resize(first + sizes.size());
  uint64_t stride = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    values[first + i] = stride;
    stride *= uint64_t(sizes[i]);
  }
}
} // namespace

CudaLayer::CudaLayer(const LayerMetadata &metadata, const void *image,
                     uint64_t imageSize, std::string origin)
    : metadata_(metadata), plan_(*metadata_.cuda), image_(image),
      origin_(std::move(origin)) {
  checkImage(image, imageSize, origin_);
}

CudaLayer::~CudaLayer() = default;

void CudaLayer::prepare() {
  std::lock_guard<std::mutex> lock(mutex_);
  prepareLocked();
}

void CudaLayer::prepareLocked() {
  if (device_)
    return;
  std::shared_ptr<const cuda::Device> device =
      cuda::Device::open(cuda::Driver::load(), 0);
  device->requireArch(plan_.arch);
  auto stream = std::make_unique<cuda::Stream>(device);
  auto module = std::make_unique<cuda::Module>(device, image_, origin_);
  std::map<std::string, cuda::Kernel> byName;
  for (const std::string &name : plan_.kernels())
    byName.emplace(name, module->kernel(name));
  std::vector<cuda::Kernel> kernels(plan_.steps.size());
  std::map<std::string, unsigned> shared; // the most each kernel asks for
  for (size_t s = 0; s < plan_.steps.size(); ++s)
    if (plan_.steps[s].isLaunch()) {
      kernels[s] = byName.at(plan_.steps[s].kernel);
      unsigned &most = shared[plan_.steps[s].kernel];
      most = std::max(most, plan_.steps[s].sharedBytes);
    }
  for (const auto &[name, bytes] : shared)
    device->allowShared(byName.at(name), bytes);

  const char *profile = std::getenv("MOERT_CUDA_PROFILE");
  profilePath_ = profile ? profile : "";
  const char *graphs = std::getenv("MOERT_CUDA_GRAPHS");
  useGraphs_ = device->driver().hasGraphs() &&
               !(graphs && std::string_view(graphs) == "0");
  device_ = std::move(device);
  stream_ = std::move(stream);
  module_ = std::move(module);
  kernels_ = std::move(kernels);
}

void CudaLayer::setWeights(const std::vector<AlignedBuffer> &host) {
  std::lock_guard<std::mutex> lock(mutex_);
  prepareLocked();
  const std::vector<ArgumentSpec> &args = metadata_.arguments;
  std::vector<cuda::DeviceBuffer> buffers(args.size());
  try {
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i].role != Role::Weight)
        continue;
      buffers[i] = cuda::DeviceBuffer(device_, host[i].size());
      stream_->upload(buffers[i], host[i].data(), host[i].size());
    }
    stream_->synchronize(); // `host` may go once the copies are done
  } catch (...) {
    try {
      stream_->synchronize();
    } catch (...) {
    }
    throw;
  }
  std::swap(weights_, buffers);
  graphs_.clear(); // they launch with the old weights' addresses
}

/// A call's launches, evaluated for its token count: grids and the kernel
/// parameters, which point into the arena at `base`.
struct CudaLayer::Call {
  PlanLayout layout;
  std::vector<LaunchDims> dims;         // by step
  std::vector<uint64_t> values;         // every step's parameters
  std::vector<cuda::TensorMap> maps;    // tensor map parameters, in order
  std::vector<std::vector<void *>> params; // by step, NULL-terminated
};

void CudaLayer::requireWeights() const {
  if (!device_ || weights_.empty())
    fail(MOERT_ERROR_STATE,
         "{}: forward called before the weights were loaded", origin_);
}

CudaLayer::Call CudaLayer::evaluate(int64_t tokens) const {
  // Everything is evaluated and checked before any device work.
  Call call;
  uint64_t t = uint64_t(tokens);
  call.layout = plan_.layout(metadata_, t);
  call.dims.resize(plan_.steps.size());
  for (size_t s = 0; s < plan_.steps.size(); ++s)
    if (plan_.steps[s].isLaunch())
      call.dims[s] = plan_.launchDims(plan_.steps[s], t);
  return call;
}

void CudaLayer::bind(Call &call, int64_t tokens, cuda::CUdeviceptr x,
                     cuda::CUdeviceptr y) const {
  // Every step's kernel parameters (8 bytes each, or a 128-byte tensor
  // map), then one array of pointers to them per step. Each step's array
  // ends with a NULL entry: the driver reads only as many as the kernel
  // has, the fake driver of the tests counts them.
  cuda::CUdeviceptr base = arena_.get();
  const PlanLayout &layout = call.layout;
  if (!x)
    x = base + layout.inputOffset;
  size_t outputBuffer = plan_.results[0].index;
  // Where a reference lives and its sizes.
  auto locate = [&](const PlanRef &ref)
      -> std::pair<cuda::CUdeviceptr, std::vector<int64_t>> {
    if (ref.isBuffer)
      return {y && ref.index == outputBuffer ? y
                                             : base + layout.offsets[ref.index],
              layout.shapes[ref.index]};
    const ArgumentSpec &arg = metadata_.arguments[ref.index];
    std::vector<int64_t> sizes = arg.shape;
    for (int64_t &size : sizes)
      size = size == -1 ? tokens : size;
    return {arg.role == Role::Input ? x : weights_[ref.index].get(), sizes};
  };
  // A parameter is (the step, a value index or a map index).
  struct Param {
    bool map;
    size_t at;
  };
  std::vector<std::vector<Param>> stepParams(plan_.steps.size());
  size_t mapCount = 0;
  for (const PlanStep &step : plan_.steps)
    for (const PlanRef &ref : step.args)
      mapCount += ref.isTensorMap;
  call.maps.resize(mapCount);
  size_t nextMap = 0;
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    for (size_t a = 0; a < plan_.steps[s].args.size(); ++a) {
      const PlanRef &ref = plan_.steps[s].args[a];
      auto [at, sizes] = locate(ref);
      if (!ref.isTensorMap) {
        size_t first = call.values.size();
        appendDescriptor(call.values, at, sizes);
        for (size_t v = first; v < call.values.size(); ++v)
          stepParams[s].push_back({false, v});
        continue;
      }
      // Innermost first, as the driver takes them.
      uint32_t rank = uint32_t(sizes.size());
      uint64_t dims[cuda::kTensorMapMaxRank], strides[cuda::kTensorMapMaxRank];
      uint32_t box[cuda::kTensorMapMaxRank];
      uint64_t stride = 2; // bf16
      for (uint32_t d = 0; d < rank; ++d) {
        dims[d] = uint64_t(sizes[rank - 1 - d]);
        box[d] = ref.box[rank - 1 - d];
        stride *= dims[d];
        if (d + 1 < rank)
          strides[d] = stride;
      }
      device_->encodeTensorMap(
          call.maps[nextMap], at, rank, dims, strides, box,
          fmt::format("{} argument {} of {}", plan_.steps[s].field, a,
                      plan_.steps[s].kernel));
      stepParams[s].push_back({true, nextMap++});
    }
  }
  call.params.resize(plan_.steps.size());
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    for (const Param &p : stepParams[s])
      call.params[s].push_back(p.map ? static_cast<void *>(&call.maps[p.at])
                                     : &call.values[p.at]);
    call.params[s].push_back(nullptr);
  }
}

void CudaLayer::launchAll(
    const Call &call, const cuda::Stream &stream,
    const std::function<void(size_t)> &afterLaunch) const {
  for (size_t s = 0; s < plan_.steps.size(); ++s) {
    if (!plan_.steps[s].isLaunch())
      continue;
    stream.launch(kernels_[s], call.dims[s].grid, call.dims[s].block,
                  plan_.steps[s].sharedBytes,
                  const_cast<void **>(call.params[s].data()));
    if (afterLaunch)
      afterLaunch(s);
  }
}

void CudaLayer::launchHostCall(Call &call, int64_t tokens) {
  auto graph = std::find_if(graphs_.begin(), graphs_.end(),
                            [&](const auto &g) { return g.first == tokens; });
  // A replay launches the parameters bound when it was captured: nothing to
  // bind (nor tensor maps to encode) on a decoding loop's calls.
  if (useGraphs_ && graph != graphs_.end())
    return graph->second.launch(*stream_);
  bind(call, tokens, 0, 0);
  if (!useGraphs_)
    return launchAll(call, *stream_);
  if (graphs_.size() == kMaxGraphs)
    graphs_.erase(graphs_.begin());
  graphs_.emplace_back(tokens,
                       stream_->capture([&] { launchAll(call, *stream_); }));
  graphs_.back().second.launch(*stream_);
}

void CudaLayer::launchProfiled(const Call &call, int64_t tokens) {
  cuda::Event start(device_);
  start.record(*stream_);
  std::vector<std::pair<size_t, std::unique_ptr<cuda::Event>>> ends;
  launchAll(call, *stream_, [&](size_t s) {
    ends.emplace_back(s, std::make_unique<cuda::Event>(device_));
    ends.back().second->record(*stream_);
  });
  if (ends.empty())
    return;
  ends.back().second->synchronize();
  nlohmann::json steps = nlohmann::json::array();
  const cuda::Event *previous = &start;
  for (const auto &[s, end] : ends) {
    steps.push_back({{"step", s},
                     {"kernel", plan_.steps[s].kernel},
                     {"ms", end->millisecondsSince(*previous)}});
    previous = end.get();
  }
  nlohmann::json record = {
      {"layer", origin_},
      {"tokens", tokens},
      {"total_ms", ends.back().second->millisecondsSince(start)},
      {"steps", std::move(steps)}};
  std::string line = record.dump() + "\n";
  std::FILE *file = std::fopen(profilePath_.c_str(), "a");
  bool written = file && std::fputs(line.c_str(), file) >= 0;
  if (file)
    written = std::fclose(file) == 0 && written;
  if (!written)
    fail(MOERT_ERROR_IO, "MOERT_CUDA_PROFILE: cannot append to {}",
         profilePath_);
}

void CudaLayer::growArena(uint64_t bytes, const cuda::Stream *inFlight) {
  if (bytes <= arena_.size())
    return;
  // Work still queued may read the old arena: wait for it, then free it
  // before allocating the larger one.
  if (inFlight && arena_.size() > 0)
    inFlight->synchronize();
  graphs_.clear(); // they launch with the old arena's addresses
  arena_ = cuda::DeviceBuffer();
  arena_ = cuda::DeviceBuffer(device_, size_t(bytes));
}

void CudaLayer::forward(const float *x, int64_t tokens, float *y,
                        int64_t *counts) {
  std::lock_guard<std::mutex> lock(mutex_);
  requireWeights();
  Call call = evaluate(tokens);
  // The layer's own stream is idle between calls (each ends synchronised);
  // a call on a caller's stream may still be using the arena.
  if (lastCallerStream_) {
    lastCallerStream_->synchronize();
    lastCallerStream_.reset();
  }
  growArena(call.layout.bytes, nullptr);

  size_t xBytes = size_t(tokens * metadata_.hiddenSize) * sizeof(float);
  const PlanRef &output = plan_.results[0], &stats = plan_.results[1];
  try {
    stream_->upload(arena_, x, xBytes, size_t(call.layout.inputOffset));
    if (profilePath_.empty()) {
      launchHostCall(call, tokens);
    } else {
      bind(call, tokens, 0, 0);
      launchProfiled(call, tokens);
    }
    stream_->download(y, arena_, xBytes,
                      size_t(call.layout.offsets[output.index]));
    stream_->download(counts, arena_,
                      size_t(metadata_.numExperts) * sizeof(int64_t),
                      size_t(call.layout.offsets[stats.index]));
    stream_->synchronize();
  } catch (...) {
    // No copy may still be reading x or writing y once this returns.
    try {
      stream_->synchronize();
    } catch (...) {
    }
    throw;
  }
}

void CudaLayer::enqueueForward(cuda::CUdeviceptr x, int64_t tokens,
                               cuda::CUdeviceptr y, cuda::CUstream stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  requireWeights();
  Call call = evaluate(tokens);
  cuda::Stream caller = cuda::Stream::borrow(device_, stream);
  if (call.layout.bytes > arena_.size()) {
    // The previous caller stream may still be using the arena; the stream
    // of this call is ordered after it by the caller's contract.
    growArena(call.layout.bytes,
              lastCallerStream_ ? &*lastCallerStream_ : &caller);
  }
  lastCallerStream_.emplace(cuda::Stream::borrow(device_, stream));
  // x and y go straight into the kernels' parameters when aligned as the
  // arena's buffers are (the kernels may load 16 bytes at a time);
  // otherwise through the arena, with a device copy each way.
  bool direct = x % kDirectAlignment == 0 && y % kDirectAlignment == 0;
  size_t xBytes = size_t(tokens * metadata_.hiddenSize) * sizeof(float);
  const PlanRef &output = plan_.results[0];
  if (direct) {
    bind(call, tokens, x, y);
    launchAll(call, caller);
    return;
  }
  bind(call, tokens, 0, 0);
  caller.copy(arena_.get() + call.layout.inputOffset, x, xBytes);
  launchAll(call, caller);
  caller.copy(y, arena_.get() + call.layout.offsets[output.index], xBytes);
}

void CudaLayer::reserve(int64_t tokens) {
  std::lock_guard<std::mutex> lock(mutex_);
  requireWeights();
  growArena(evaluate(tokens).layout.bytes,
            lastCallerStream_ ? &*lastCallerStream_ : nullptr);
  lastCallerStream_.reset();
}

size_t CudaLayer::workspaceBytes(int64_t tokens) const {
  if (tokens <= 0)
    return 0;
  try {
    return size_t(plan_.layout(metadata_, uint64_t(tokens)).bytes);
  } catch (const Error &) {
    return SIZE_MAX;
  }
}

} // namespace moert
