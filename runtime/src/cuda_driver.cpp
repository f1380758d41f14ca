//===- cuda_driver.cpp - The CUDA driver API, loaded at run time ---------===//

#include "runtime/src/cuda_driver.h"

#include "runtime/src/error.h"

#include <algorithm>
#include <cstdlib>
#include <type_traits>
#include <utility>

#include <dlfcn.h>

namespace moert::cuda {

namespace {
/// The GPU generation of a compute capability, for messages ("" if unknown).
std::string familyOf(int major, int minor) {
  switch (major) {
  case 7:
    return minor >= 5 ? " (Turing)" : " (Volta)";
  case 8:
    return minor == 9 ? " (Ada)" : " (Ampere)";
  case 9:
    return " (Hopper)";
  case 10:
  case 11:
  case 12:
    return " (Blackwell)";
  }
  return "";
}

/// Runs `release` with the device's context current; destructors cannot
/// throw, and a failed release (e.g. after a sticky kernel fault) is moot.
template <typename F> void releaseOn(const Device &device, F &&release) {
  try {
    device.makeCurrent();
  } catch (...) {
  }
  release();
}
} // namespace

std::string DeviceInfo::arch() const {
  return fmt::format("sm_{}{}", smMajor, smMinor);
}

// --- Driver --------------------------------------------------------------

std::shared_ptr<const Driver> Driver::load() {
  const char *override = std::getenv("MOERT_LIBCUDA");
  std::shared_ptr<Driver> driver(new Driver());
  driver->path_ = override && *override ? override : "libcuda.so.1";
  // RTLD_NODELETE: the driver starts threads of its own, so it must stay
  // mapped even when the last Driver is gone.
  driver->library_ =
      dlopen(driver->path_.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!driver->library_) {
    const char *reason = dlerror();
    fail(MOERT_ERROR_NO_DEVICE,
         "CUDA driver not found ({}); --device cuda needs an NVIDIA driver",
         reason ? reason : driver->path_ + ": dlopen failed");
  }

  auto resolve = [&](auto &entry, const char *symbol) {
    void *address = dlsym(driver->library_, symbol);
    if (!address)
      fail(MOERT_ERROR_NO_DEVICE,
           "CUDA driver {} has no symbol {}; a driver for CUDA 11 or newer "
           "is needed",
           driver->path_, symbol);
    entry = reinterpret_cast<std::remove_reference_t<decltype(entry)>>(address);
  };
  DriverApi &api = driver->api_;
  resolve(api.cuInit, "cuInit");
  resolve(api.cuDriverGetVersion, "cuDriverGetVersion");
  resolve(api.cuDeviceGetCount, "cuDeviceGetCount");
  resolve(api.cuDeviceGet, "cuDeviceGet");
  resolve(api.cuDeviceGetName, "cuDeviceGetName");
  resolve(api.cuDeviceGetAttribute, "cuDeviceGetAttribute");
  resolve(api.cuDeviceTotalMem, "cuDeviceTotalMem_v2");
  resolve(api.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  resolve(api.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  resolve(api.cuCtxSetCurrent, "cuCtxSetCurrent");
  resolve(api.cuModuleLoadData, "cuModuleLoadData");
  resolve(api.cuModuleGetFunction, "cuModuleGetFunction");
  resolve(api.cuModuleUnload, "cuModuleUnload");
  resolve(api.cuLaunchKernel, "cuLaunchKernel");
  resolve(api.cuMemAlloc, "cuMemAlloc_v2");
  resolve(api.cuMemFree, "cuMemFree_v2");
  resolve(api.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
  resolve(api.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
  resolve(api.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
  resolve(api.cuMemsetD8Async, "cuMemsetD8Async");
  resolve(api.cuStreamCreate, "cuStreamCreate");
  resolve(api.cuStreamSynchronize, "cuStreamSynchronize");
  resolve(api.cuStreamDestroy, "cuStreamDestroy_v2");
  resolve(api.cuEventCreate, "cuEventCreate");
  resolve(api.cuEventRecord, "cuEventRecord");
  resolve(api.cuEventSynchronize, "cuEventSynchronize");
  resolve(api.cuEventElapsedTime, "cuEventElapsedTime");
  resolve(api.cuEventDestroy, "cuEventDestroy_v2");
  resolve(api.cuGetErrorName, "cuGetErrorName");
  resolve(api.cuGetErrorString, "cuGetErrorString");
  auto resolveOptional = [&](auto &entry, const char *symbol) {
    entry = reinterpret_cast<std::remove_reference_t<decltype(entry)>>(
        dlsym(driver->library_, symbol));
  };
  resolveOptional(api.cuStreamBeginCapture, "cuStreamBeginCapture_v2");
  resolveOptional(api.cuStreamEndCapture, "cuStreamEndCapture");
  resolveOptional(api.cuGraphInstantiateWithFlags,
                  "cuGraphInstantiateWithFlags");
  resolveOptional(api.cuGraphLaunch, "cuGraphLaunch");
  resolveOptional(api.cuGraphExecDestroy, "cuGraphExecDestroy");
  resolveOptional(api.cuGraphDestroy, "cuGraphDestroy");
  resolveOptional(api.cuTensorMapEncodeTiled, "cuTensorMapEncodeTiled");
  resolveOptional(api.cuFuncSetAttribute, "cuFuncSetAttribute");

  // cuInit is cheap after the first call in a process, so every load
  // repeats it rather than caching a driver (or a failure).
  CUresult init = api.cuInit(0);
  if (init == kErrorNoDevice)
    fail(MOERT_ERROR_NO_DEVICE, "no CUDA device: cuInit failed with {}",
         driver->describe(init));
  if (init != kSuccess)
    fail(MOERT_ERROR_NO_DEVICE,
         "CUDA driver {} cannot be initialised: cuInit failed with {}",
         driver->path_, driver->describe(init));
  driver->check(api.cuDriverGetVersion(&driver->version_), "cuDriverGetVersion",
                "CUDA driver");
  return driver;
}

bool Driver::hasGraphs() const {
  return api_.cuStreamBeginCapture && api_.cuStreamEndCapture &&
         api_.cuGraphInstantiateWithFlags && api_.cuGraphLaunch &&
         api_.cuGraphExecDestroy && api_.cuGraphDestroy;
}

Driver::~Driver() {
  if (library_)
    dlclose(library_);
}

std::string Driver::describe(CUresult result) const {
  const char *name = nullptr, *text = nullptr;
  if (api_.cuGetErrorName(result, &name) != kSuccess || !name)
    return fmt::format("CUDA error {}", result);
  if (api_.cuGetErrorString(result, &text) != kSuccess || !text)
    return name;
  return fmt::format("{} ({})", name, text);
}

void Driver::check(CUresult result, std::string_view call,
                   std::string_view context, moert_status status) const {
  if (result == kSuccess)
    return;
  fail(result == kErrorOutOfMemory ? MOERT_ERROR_OUT_OF_MEMORY : status,
       "{}: {} failed with {}", context, call, describe(result));
}

int Driver::deviceCount() const {
  int count = 0;
  check(api_.cuDeviceGetCount(&count), "cuDeviceGetCount", "CUDA driver");
  return count;
}

DeviceInfo Driver::deviceInfo(int ordinal) const {
  if (ordinal < 0)
    fail(MOERT_ERROR_INVALID_ARGUMENT, "CUDA device {} is not a device number",
         ordinal);
  int count = deviceCount();
  if (count == 0)
    fail(MOERT_ERROR_NO_DEVICE, "no CUDA device: the driver found none");
  if (ordinal >= count)
    fail(MOERT_ERROR_NO_DEVICE,
         "no CUDA device {}: the driver found {} device{}", ordinal, count,
         count == 1 ? "" : "s");

  std::string context = fmt::format("CUDA device {}", ordinal);
  CUdevice device = 0;
  check(api_.cuDeviceGet(&device, ordinal), "cuDeviceGet", context);
  DeviceInfo info;
  info.ordinal = ordinal;
  char name[256] = {};
  check(api_.cuDeviceGetName(name, int(sizeof name), device), "cuDeviceGetName",
        context);
  name[sizeof name - 1] = '\0';
  info.name = name;
  check(
      api_.cuDeviceGetAttribute(&info.smMajor, kAttributeComputeMajor, device),
      "cuDeviceGetAttribute", context);
  check(
      api_.cuDeviceGetAttribute(&info.smMinor, kAttributeComputeMinor, device),
      "cuDeviceGetAttribute", context);
  check(api_.cuDeviceTotalMem(&info.totalMemory, device), "cuDeviceTotalMem",
        context);
  return info;
}

// --- Device --------------------------------------------------------------

std::shared_ptr<const Device> Device::open(std::shared_ptr<const Driver> driver,
                                           int ordinal) {
  std::shared_ptr<Device> device(new Device());
  device->driver_ = std::move(driver);
  device->info_ = device->driver_->deviceInfo(ordinal);
  const DriverApi &api = device->api();
  device->check(api.cuDeviceGet(&device->device_, ordinal), "cuDeviceGet");
  // Fails e.g. for a device in exclusive mode that another process holds.
  device->check(
      api.cuDevicePrimaryCtxRetain(&device->context_, device->device_),
      "cuDevicePrimaryCtxRetain", MOERT_ERROR_NO_DEVICE);
  device->makeCurrent();
  return device;
}

Device::~Device() {
  if (context_)
    api().cuDevicePrimaryCtxRelease(device_);
}

void Device::makeCurrent() const {
  check(api().cuCtxSetCurrent(context_), "cuCtxSetCurrent");
}

void Device::check(CUresult result, std::string_view call,
                   moert_status status) const {
  if (result != kSuccess)
    driver_->check(result, call, fmt::format("CUDA device {}", info_.ordinal),
                   status);
}

unsigned Device::maxSharedPerBlock() const {
  int bytes = 0;
  check(api().cuDeviceGetAttribute(&bytes, kAttributeMaxSharedPerBlockOptin,
                                   device_),
        "cuDeviceGetAttribute(MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)");
  return bytes > 0 ? unsigned(bytes) : kDefaultSharedBytes;
}

void Device::allowShared(const Kernel &kernel, unsigned bytes) const {
  if (bytes <= kDefaultSharedBytes)
    return;
  unsigned most = maxSharedPerBlock();
  if (bytes > most)
    fail(MOERT_ERROR_NO_DEVICE,
         "CUDA device {} ({}): kernel {} needs {} bytes of shared memory per "
         "block, the device allows {}",
         info_.ordinal, info_.name, kernel.name, bytes, most);
  if (!api().cuFuncSetAttribute)
    fail(MOERT_ERROR_NO_DEVICE,
         "CUDA driver {} has no cuFuncSetAttribute (kernel {} needs {} bytes "
         "of shared memory)",
         driver().path(), kernel.name, bytes);
  makeCurrent();
  check(api().cuFuncSetAttribute(kernel.function,
                                 kFuncAttributeMaxDynamicShared, int(bytes)),
        fmt::format("cuFuncSetAttribute({}, MAX_DYNAMIC_SHARED_SIZE_BYTES, {})",
                    kernel.name, bytes));
}

void Device::encodeTensorMap(TensorMap &map, CUdeviceptr address,
                             uint32_t rank, const uint64_t *dims,
                             const uint64_t *strides, const uint32_t *box,
                             std::string_view what) const {
  if (!api().cuTensorMapEncodeTiled)
    fail(MOERT_ERROR_NO_DEVICE,
         "CUDA driver {} has no cuTensorMapEncodeTiled (CUDA 12 or newer is "
         "needed for the tensor maps of {})",
         driver().path(), what);
  uint32_t elementStrides[kTensorMapMaxRank] = {1, 1, 1, 1, 1};
  check(api().cuTensorMapEncodeTiled(
            &map, kTensorMapBFloat16, rank, reinterpret_cast<void *>(address),
            dims, strides, box, elementStrides, /*interleave=*/0,
            kTensorMapSwizzle128B, kTensorMapL2Promotion128B,
            kTensorMapOOBFillZeros),
        fmt::format("cuTensorMapEncodeTiled({})", what));
}

void Device::requireArch(std::string_view arch) const {
  // sm_<major><minor>[a]: "sm_90a", "sm_86", "sm_100a".
  std::string_view digits = arch.substr(std::min<size_t>(3, arch.size()));
  bool specific = !digits.empty() && digits.back() == 'a';
  if (specific)
    digits.remove_suffix(1);
  int number = 0;
  bool valid = arch.substr(0, 3) == "sm_" && digits.size() >= 2 &&
               digits.size() <= 3 && digits[0] != '0';
  for (char c : digits) {
    valid = valid && c >= '0' && c <= '9';
    number = number * 10 + (c - '0');
  }
  if (!valid)
    fail(MOERT_ERROR_INVALID_ARGUMENT,
         "'{}' is not a CUDA architecture (expected e.g. sm_90a)", arch);
  int major = number / 10, minor = number % 10;
  bool runs = info_.smMajor == major &&
              (specific ? info_.smMinor == minor : info_.smMinor >= minor);
  if (!runs)
    fail(MOERT_ERROR_NO_DEVICE, "CUDA device {} is {}; this layer needs {}{}",
         info_.ordinal, info_.arch(), arch, familyOf(major, minor));
}

// --- DeviceBuffer --------------------------------------------------------

DeviceBuffer::DeviceBuffer(std::shared_ptr<const Device> device, size_t bytes)
    : device_(std::move(device)) {
  if (bytes == 0)
    return;
  device_->makeCurrent();
  device_->check(device_->api().cuMemAlloc(&ptr_, bytes),
                 fmt::format("cuMemAlloc of {} bytes", bytes));
  bytes_ = bytes;
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer &&other) noexcept
    : device_(std::move(other.device_)), ptr_(std::exchange(other.ptr_, 0)),
      bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&other) noexcept {
  if (this != &other) {
    release();
    device_ = std::move(other.device_);
    ptr_ = std::exchange(other.ptr_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::release() noexcept {
  if (ptr_)
    releaseOn(*device_, [&] { device_->api().cuMemFree(ptr_); });
  ptr_ = 0;
  bytes_ = 0;
}

// --- Stream --------------------------------------------------------------

Stream::Stream(std::shared_ptr<const Device> device)
    : device_(std::move(device)) {
  device_->makeCurrent();
  device_->check(device_->api().cuStreamCreate(&stream_, kStreamNonBlocking),
                 "cuStreamCreate");
}

Stream Stream::borrow(std::shared_ptr<const Device> device, CUstream stream) {
  return Stream(std::move(device), stream, /*owned=*/false);
}

Stream::Stream(Stream &&other) noexcept
    : device_(std::move(other.device_)),
      stream_(std::exchange(other.stream_, nullptr)), owned_(other.owned_) {}

Stream::~Stream() {
  if (owned_ && stream_)
    releaseOn(*device_, [&] { device_->api().cuStreamDestroy(stream_); });
}

void Stream::checkRange(const DeviceBuffer &buffer, size_t bytes, size_t offset,
                        const char *what) const {
  if (offset > buffer.size() || bytes > buffer.size() - offset)
    fail(MOERT_ERROR_INVALID_ARGUMENT,
         "CUDA device {}: {} of {} bytes at offset {} overruns a buffer of {} "
         "bytes",
         device_->info().ordinal, what, bytes, offset, buffer.size());
}

void Stream::upload(const DeviceBuffer &buffer, const void *host, size_t bytes,
                    size_t offset) const {
  checkRange(buffer, bytes, offset, "upload");
  if (bytes == 0)
    return;
  device_->makeCurrent();
  device_->check(device_->api().cuMemcpyHtoDAsync(buffer.get() + offset, host,
                                                  bytes, stream_),
                 "cuMemcpyHtoDAsync");
}

void Stream::download(void *host, const DeviceBuffer &buffer, size_t bytes,
                      size_t offset) const {
  checkRange(buffer, bytes, offset, "download");
  if (bytes == 0)
    return;
  device_->makeCurrent();
  device_->check(device_->api().cuMemcpyDtoHAsync(host, buffer.get() + offset,
                                                  bytes, stream_),
                 "cuMemcpyDtoHAsync");
}

void Stream::copy(CUdeviceptr dst, CUdeviceptr src, size_t bytes) const {
  if (bytes == 0)
    return;
  device_->makeCurrent();
  device_->check(device_->api().cuMemcpyDtoDAsync(dst, src, bytes, stream_),
                 "cuMemcpyDtoDAsync");
}

void Stream::zero(const DeviceBuffer &buffer) const {
  if (buffer.size() == 0)
    return;
  device_->makeCurrent();
  device_->check(
      device_->api().cuMemsetD8Async(buffer.get(), 0, buffer.size(), stream_),
      "cuMemsetD8Async");
}

void Stream::launch(const Kernel &kernel, const unsigned (&grid)[3],
                    const unsigned (&block)[3], unsigned sharedBytes,
                    void **params) const {
  device_->makeCurrent();
  device_->check(device_->api().cuLaunchKernel(
                     kernel.function, grid[0], grid[1], grid[2], block[0],
                     block[1], block[2], sharedBytes, stream_, params, nullptr),
                 fmt::format("cuLaunchKernel({})", kernel.name));
}

void Stream::synchronize() const {
  device_->makeCurrent();
  // Faults of kernels launched earlier surface here.
  device_->check(device_->api().cuStreamSynchronize(stream_),
                 "cuStreamSynchronize");
}

GraphExec Stream::capture(const std::function<void()> &enqueue) const {
  const DriverApi &api = device_->api();
  if (!device_->driver().hasGraphs())
    fail(MOERT_ERROR_INTERNAL, "CUDA driver {} has no CUDA graphs",
         device_->driver().path());
  device_->makeCurrent();
  device_->check(
      api.cuStreamBeginCapture(stream_, kStreamCaptureModeThreadLocal),
      "cuStreamBeginCapture");
  CUgraph graph = nullptr;
  try {
    enqueue();
  } catch (...) {
    // The stream must leave capture mode whatever went wrong.
    if (api.cuStreamEndCapture(stream_, &graph) == kSuccess && graph)
      api.cuGraphDestroy(graph);
    throw;
  }
  device_->check(api.cuStreamEndCapture(stream_, &graph), "cuStreamEndCapture");
  CUgraphExec exec = nullptr;
  CUresult instantiated = api.cuGraphInstantiateWithFlags(&exec, graph, 0);
  api.cuGraphDestroy(graph);
  device_->check(instantiated, "cuGraphInstantiateWithFlags");
  return GraphExec(device_, exec);
}

// --- GraphExec -----------------------------------------------------------

GraphExec::~GraphExec() { release(); }

GraphExec::GraphExec(GraphExec &&other) noexcept
    : device_(std::move(other.device_)),
      exec_(std::exchange(other.exec_, nullptr)) {}

GraphExec &GraphExec::operator=(GraphExec &&other) noexcept {
  if (this != &other) {
    release();
    device_ = std::move(other.device_);
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

void GraphExec::release() noexcept {
  if (exec_)
    releaseOn(*device_, [&] { device_->api().cuGraphExecDestroy(exec_); });
  exec_ = nullptr;
}

void GraphExec::launch(const Stream &stream) const {
  device_->makeCurrent();
  device_->check(device_->api().cuGraphLaunch(exec_, stream.get()),
                 "cuGraphLaunch");
}

// --- Event ---------------------------------------------------------------

Event::Event(std::shared_ptr<const Device> device)
    : device_(std::move(device)) {
  device_->makeCurrent();
  device_->check(device_->api().cuEventCreate(&event_, 0), "cuEventCreate");
}

Event::~Event() {
  if (event_)
    releaseOn(*device_, [&] { device_->api().cuEventDestroy(event_); });
}

void Event::record(const Stream &stream) const {
  device_->makeCurrent();
  device_->check(device_->api().cuEventRecord(event_, stream.get()),
                 "cuEventRecord");
}

void Event::synchronize() const {
  device_->makeCurrent();
  device_->check(device_->api().cuEventSynchronize(event_),
                 "cuEventSynchronize");
}

float Event::millisecondsSince(const Event &start) const {
  float ms = 0;
  device_->makeCurrent();
  device_->check(device_->api().cuEventElapsedTime(&ms, start.event_, event_),
                 "cuEventElapsedTime");
  return ms;
}

// --- Module --------------------------------------------------------------

Module::Module(std::shared_ptr<const Device> device, const void *image,
               std::string origin)
    : device_(std::move(device)), origin_(std::move(origin)) {
  if (!image)
    fail(MOERT_ERROR_INVALID_ARGUMENT, "{}: no GPU code to load", origin_);
  device_->makeCurrent();
  // A cubin for another architecture is the layer's problem, not a bug.
  device_->driver().check(
      device_->api().cuModuleLoadData(&module_, image), "cuModuleLoadData",
      fmt::format("{}: CUDA device {}", origin_, device_->info().ordinal),
      MOERT_ERROR_ABI);
}

Module::~Module() {
  if (module_)
    releaseOn(*device_, [&] { device_->api().cuModuleUnload(module_); });
}

Kernel Module::kernel(const std::string &name) const {
  device_->makeCurrent();
  Kernel kernel{nullptr, name};
  CUresult result = device_->api().cuModuleGetFunction(&kernel.function,
                                                       module_, name.c_str());
  if (result != kSuccess)
    fail(MOERT_ERROR_ABI,
         "{}: no kernel '{}' in its GPU code "
         "(cuModuleGetFunction failed with {})",
         origin_, name, device_->driver().describe(result));
  return kernel;
}

} // namespace moert::cuda
