//===- cuda_driver.h - The CUDA driver API, loaded at run time -*- C++ -*-===//
//
// libmoert has no link-time dependency on CUDA: Driver::load() dlopens the
// NVIDIA driver (libcuda.so.1; $MOERT_LIBCUDA overrides the path, for tests)
// only when a CUDA device is asked for, so the runtime builds and its CPU
// path runs on machines without a driver or toolkit. The few driver types
// and entry points it uses are declared here, ABI-compatible with cuda.h,
// under the symbol names cuda.h's macros select (cuMemAlloc_v2, ...).
//
// On top of the driver: Device (one GPU and its retained primary context)
// and the RAII helpers DeviceBuffer, Stream and Module. Every failure throws
// moert::Error with a one-line message naming the call and the driver's
// error; a missing driver or device is MOERT_ERROR_NO_DEVICE.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_CUDA_DRIVER_H
#define MOERT_SRC_CUDA_DRIVER_H

#include "moert/moert.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

// The driver's opaque handle types, at global scope as in cuda.h: the same
// types as there (and in the fake driver of the tests), not look-alikes.
struct CUctx_st;
struct CUmod_st;
struct CUfunc_st;
struct CUstream_st;
struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;
/// The driver's CUtensorMap (cuda.h): opaque, 128 bytes, 64-byte aligned.
/// Defined at global scope under the driver's own tag, so that pointers to
/// it have the entry point's exact type.
struct alignas(64) CUtensorMap_st {
  unsigned long long opaque[16];
};

namespace moert::cuda {

// --- The driver API's types and constants, as in cuda.h ------------------

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = ::CUctx_st *;
using CUmodule = ::CUmod_st *;
using CUfunction = ::CUfunc_st *;
using CUstream = ::CUstream_st *;
using CUevent = ::CUevent_st *;
using CUgraph = ::CUgraph_st *;
using CUgraphExec = ::CUgraphExec_st *;

constexpr CUresult kSuccess = 0;           // CUDA_SUCCESS
constexpr CUresult kErrorOutOfMemory = 2;  // CUDA_ERROR_OUT_OF_MEMORY
constexpr CUresult kErrorNoDevice = 100;   // CUDA_ERROR_NO_DEVICE
constexpr int kAttributeComputeMajor = 75; // ..._COMPUTE_CAPABILITY_MAJOR
constexpr int kAttributeComputeMinor = 76; // ..._COMPUTE_CAPABILITY_MINOR
constexpr unsigned kStreamNonBlocking = 1; // CU_STREAM_NON_BLOCKING
// CU_STREAM_CAPTURE_MODE_THREAD_LOCAL: only this thread's unsafe calls
// (synchronous ones) are refused while it captures.
constexpr int kStreamCaptureModeThreadLocal = 1;
/// CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
constexpr int kAttributeMaxSharedPerBlockOptin = 97;
/// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
constexpr int kFuncAttributeMaxDynamicShared = 8;
/// Shared memory a block gets without opting in.
constexpr unsigned kDefaultSharedBytes = 48 * 1024;
/// CUtensorMapDataType, ...Swizzle, ...L2promotion, ...FloatOOBfill values.
constexpr int kTensorMapBFloat16 = 9;
constexpr int kTensorMapSwizzle128B = 3;
constexpr int kTensorMapL2Promotion128B = 2;
constexpr int kTensorMapOOBFillZeros = 0; // ..._FLOAT_OOB_FILL_NONE
constexpr unsigned kTensorMapMaxRank = 5;

/// A CUtensorMap: what the driver encodes and a kernel takes by value.
using TensorMap = ::CUtensorMap_st;

// Entry points; the comment is the symbol looked up where it differs.
using cuInit_t = CUresult (*)(unsigned flags);
using cuDriverGetVersion_t = CUresult (*)(int *version);
using cuDeviceGetCount_t = CUresult (*)(int *count);
using cuDeviceGet_t = CUresult (*)(CUdevice *device, int ordinal);
using cuDeviceGetName_t = CUresult (*)(char *name, int length, CUdevice dev);
using cuDeviceGetAttribute_t = CUresult (*)(int *value, int attribute,
                                            CUdevice dev);
using cuDeviceTotalMem_t = CUresult (*)(size_t *bytes, CUdevice dev); // _v2
using cuDevicePrimaryCtxRetain_t = CUresult (*)(CUcontext *ctx, CUdevice dev);
using cuDevicePrimaryCtxRelease_t = CUresult (*)(CUdevice dev); // _v2
using cuCtxSetCurrent_t = CUresult (*)(CUcontext ctx);
using cuModuleLoadData_t = CUresult (*)(CUmodule *module, const void *image);
using cuModuleGetFunction_t = CUresult (*)(CUfunction *function,
                                           CUmodule module, const char *name);
using cuModuleUnload_t = CUresult (*)(CUmodule module);
using cuLaunchKernel_t = CUresult (*)(CUfunction f, unsigned gridX,
                                      unsigned gridY, unsigned gridZ,
                                      unsigned blockX, unsigned blockY,
                                      unsigned blockZ, unsigned sharedBytes,
                                      CUstream stream, void **params,
                                      void **extra);
using cuMemAlloc_t = CUresult (*)(CUdeviceptr *ptr, size_t bytes); // _v2
using cuMemFree_t = CUresult (*)(CUdeviceptr ptr);                 // _v2
using cuMemcpyHtoDAsync_t = CUresult (*)(CUdeviceptr dst, const void *src,
                                         size_t bytes, CUstream stream); // _v2
using cuMemcpyDtoHAsync_t = CUresult (*)(void *dst, CUdeviceptr src,
                                         size_t bytes, CUstream stream); // _v2
using cuMemcpyDtoDAsync_t = CUresult (*)(CUdeviceptr dst, CUdeviceptr src,
                                         size_t bytes, CUstream stream); // _v2
using cuMemsetD8Async_t = CUresult (*)(CUdeviceptr dst, unsigned char value,
                                       size_t count, CUstream stream);
using cuStreamCreate_t = CUresult (*)(CUstream *stream, unsigned flags);
using cuStreamSynchronize_t = CUresult (*)(CUstream stream);
using cuStreamDestroy_t = CUresult (*)(CUstream stream); // _v2
using cuEventCreate_t = CUresult (*)(CUevent *event, unsigned flags);
using cuEventRecord_t = CUresult (*)(CUevent event, CUstream stream);
using cuEventSynchronize_t = CUresult (*)(CUevent event);
using cuEventElapsedTime_t = CUresult (*)(float *ms, CUevent start,
                                          CUevent end); // _v2 where it exists
using cuEventDestroy_t = CUresult (*)(CUevent event);   // _v2
using cuStreamBeginCapture_t = CUresult (*)(CUstream stream,
                                            int mode); // _v2
using cuStreamEndCapture_t = CUresult (*)(CUstream stream, CUgraph *graph);
using cuGraphInstantiateWithFlags_t = CUresult (*)(CUgraphExec *exec,
                                                   CUgraph graph,
                                                   unsigned long long flags);
using cuGraphLaunch_t = CUresult (*)(CUgraphExec exec, CUstream stream);
using cuGraphExecDestroy_t = CUresult (*)(CUgraphExec exec);
using cuGraphDestroy_t = CUresult (*)(CUgraph graph);
using cuGetErrorName_t = CUresult (*)(CUresult error, const char **name);
using cuGetErrorString_t = CUresult (*)(CUresult error, const char **text);
// CUDA 12.0+ (Hopper's tensor memory accelerator).
using cuTensorMapEncodeTiled_t = CUresult (*)(
    TensorMap *map, int dataType, uint32_t rank, void *globalAddress,
    const uint64_t *globalDim, const uint64_t *globalStrides,
    const uint32_t *boxDim, const uint32_t *elementStrides, int interleave,
    int swizzle, int l2Promotion, int oobFill);
using cuFuncSetAttribute_t = CUresult (*)(CUfunction f, int attribute,
                                          int value);

/// Every entry point the runtime uses, all resolved by Driver::load(); the
/// graph ones are optional (null if the driver lacks them).
struct DriverApi {
  cuInit_t cuInit;
  cuDriverGetVersion_t cuDriverGetVersion;
  cuDeviceGetCount_t cuDeviceGetCount;
  cuDeviceGet_t cuDeviceGet;
  cuDeviceGetName_t cuDeviceGetName;
  cuDeviceGetAttribute_t cuDeviceGetAttribute;
  cuDeviceTotalMem_t cuDeviceTotalMem;
  cuDevicePrimaryCtxRetain_t cuDevicePrimaryCtxRetain;
  cuDevicePrimaryCtxRelease_t cuDevicePrimaryCtxRelease;
  cuCtxSetCurrent_t cuCtxSetCurrent;
  cuModuleLoadData_t cuModuleLoadData;
  cuModuleGetFunction_t cuModuleGetFunction;
  cuModuleUnload_t cuModuleUnload;
  cuLaunchKernel_t cuLaunchKernel;
  cuMemAlloc_t cuMemAlloc;
  cuMemFree_t cuMemFree;
  cuMemcpyHtoDAsync_t cuMemcpyHtoDAsync;
  cuMemcpyDtoHAsync_t cuMemcpyDtoHAsync;
  cuMemcpyDtoDAsync_t cuMemcpyDtoDAsync;
  cuMemsetD8Async_t cuMemsetD8Async;
  cuStreamCreate_t cuStreamCreate;
  cuStreamSynchronize_t cuStreamSynchronize;
  cuStreamDestroy_t cuStreamDestroy;
  cuEventCreate_t cuEventCreate;
  cuEventRecord_t cuEventRecord;
  cuEventSynchronize_t cuEventSynchronize;
  cuEventElapsedTime_t cuEventElapsedTime;
  cuEventDestroy_t cuEventDestroy;
  cuGetErrorName_t cuGetErrorName;
  cuGetErrorString_t cuGetErrorString;
  // CUDA graphs (CUDA 11.4+).
  cuStreamBeginCapture_t cuStreamBeginCapture;
  cuStreamEndCapture_t cuStreamEndCapture;
  cuGraphInstantiateWithFlags_t cuGraphInstantiateWithFlags;
  cuGraphLaunch_t cuGraphLaunch;
  cuGraphExecDestroy_t cuGraphExecDestroy;
  cuGraphDestroy_t cuGraphDestroy;
  // Tensor maps and opted-in shared memory (optional: the kernels of
  // --gpu-mma wgmma need them).
  cuTensorMapEncodeTiled_t cuTensorMapEncodeTiled;
  cuFuncSetAttribute_t cuFuncSetAttribute;
};

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int smMajor = 0, smMinor = 0; // compute capability
  size_t totalMemory = 0;       // bytes
  std::string arch() const;     // "sm_90"
};

// --- The driver ----------------------------------------------------------

class Driver {
public:
  /// Loads the driver, resolves every entry point and calls cuInit(0).
  /// Throws MOERT_ERROR_NO_DEVICE when the library is missing, lacks an
  /// entry point (older than CUDA 11) or cuInit fails.
  static std::shared_ptr<const Driver> load();
  ~Driver();
  Driver(const Driver &) = delete;
  Driver &operator=(const Driver &) = delete;

  const DriverApi &api() const { return api_; }
  const std::string &path() const { return path_; } // as passed to dlopen
  int version() const { return version_; }          // 1000 * major + 10 * minor
  /// Whether the driver has the CUDA graph entry points.
  bool hasGraphs() const;

  /// "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)".
  std::string describe(CUresult result) const;
  /// Throws unless `result` is success: "<context>: <call> failed with
  /// <describe(result)>", MOERT_ERROR_OUT_OF_MEMORY for the driver's
  /// out-of-memory error, else `status`.
  void check(CUresult result, std::string_view call, std::string_view context,
             moert_status status = MOERT_ERROR_INTERNAL) const;

  int deviceCount() const;
  /// Name, compute capability and memory of device `ordinal`, without
  /// creating a context. No such device is MOERT_ERROR_NO_DEVICE.
  DeviceInfo deviceInfo(int ordinal) const;

private:
  Driver() = default;
  void *library_ = nullptr;
  std::string path_;
  DriverApi api_{};
  int version_ = 0;
};

// --- One device ----------------------------------------------------------

/// A device and its primary context (the one the CUDA runtime API uses too),
/// retained while this object lives. The helpers below keep their Device
/// alive and make its context current on the calling thread before each
/// driver call, so any thread may use them.
struct Kernel;

class Device {
public:
  static std::shared_ptr<const Device>
  open(std::shared_ptr<const Driver> driver, int ordinal = 0);
  ~Device();
  Device(const Device &) = delete;
  Device &operator=(const Device &) = delete;

  const Driver &driver() const { return *driver_; }
  const DriverApi &api() const { return driver_->api(); }
  const DeviceInfo &info() const { return info_; }

  /// cuCtxSetCurrent(primary context) on the calling thread.
  void makeCurrent() const;
  /// Throws MOERT_ERROR_NO_DEVICE unless the device runs code built for
  /// `arch`: "sm_90a" needs exactly 9.0 (arch-specific features), "sm_86"
  /// any 8.x with x >= 6 (cubin compatibility). Bad names are
  /// MOERT_ERROR_INVALID_ARGUMENT.
  void requireArch(std::string_view arch) const;
  /// The dynamic shared memory a block may opt in to.
  unsigned maxSharedPerBlock() const;
  /// Lets `kernel` launch with `bytes` of dynamic shared memory (above the
  /// default 48 KB); more than the device has is MOERT_ERROR_NO_DEVICE.
  void allowShared(const Kernel &kernel, unsigned bytes) const;
  /// `map` = the tensor map of the bf16 tensor at `address` with `rank`
  /// dimensions `dims` (innermost first), the byte strides of all but the
  /// innermost, boxes of `box` elements, 128-byte swizzled, zeros outside.
  /// `what` names it in errors.
  void encodeTensorMap(TensorMap &map, CUdeviceptr address, uint32_t rank,
                       const uint64_t *dims, const uint64_t *strides,
                       const uint32_t *box, std::string_view what) const;
  /// Driver::check with the context "CUDA device N".
  void check(CUresult result, std::string_view call,
             moert_status status = MOERT_ERROR_INTERNAL) const;

private:
  Device() = default;
  std::shared_ptr<const Driver> driver_;
  DeviceInfo info_;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
};

// --- RAII helpers --------------------------------------------------------

/// Device memory (cuMemAlloc / cuMemFree); move-only. Zero bytes allocate
/// nothing and get() is 0.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  DeviceBuffer(std::shared_ptr<const Device> device, size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer &&other) noexcept;
  DeviceBuffer &operator=(DeviceBuffer &&other) noexcept;

  CUdeviceptr get() const { return ptr_; }
  size_t size() const { return bytes_; }

private:
  void release() noexcept;
  std::shared_ptr<const Device> device_;
  CUdeviceptr ptr_ = 0;
  size_t bytes_ = 0;
};

/// A function of a Module; valid while the module is loaded.
struct Kernel {
  CUfunction function = nullptr;
  std::string name;
};

class GraphExec;

/// A non-blocking stream (no implicit synchronisation with the legacy
/// default stream), or one the caller owns (borrow()). Copies and launches
/// are asynchronous: host buffers must stay valid, and results are only
/// there, after synchronize().
class Stream {
public:
  explicit Stream(std::shared_ptr<const Device> device);
  /// Work enqueued on `stream`, which the caller created (on `device`'s
  /// primary context) and keeps; nullptr is the legacy default stream.
  static Stream borrow(std::shared_ptr<const Device> device, CUstream stream);
  ~Stream();
  Stream(Stream &&other) noexcept;
  Stream(const Stream &) = delete;
  Stream &operator=(const Stream &) = delete;

  CUstream get() const { return stream_; }
  /// buffer[offset, offset + bytes) = host[0, bytes).
  void upload(const DeviceBuffer &buffer, const void *host, size_t bytes,
              size_t offset = 0) const;
  /// host[0, bytes) = buffer[offset, offset + bytes).
  void download(void *host, const DeviceBuffer &buffer, size_t bytes,
                size_t offset = 0) const;
  /// dst[0, bytes) = src[0, bytes), both device memory.
  void copy(CUdeviceptr dst, CUdeviceptr src, size_t bytes) const;
  void zero(const DeviceBuffer &buffer) const;
  void launch(const Kernel &kernel, const unsigned (&grid)[3],
              const unsigned (&block)[3], unsigned sharedBytes,
              void **params) const;
  void synchronize() const;
  /// What `enqueue` enqueues on this stream (launches only: copies and
  /// synchronisation are not captured), as a graph ready to launch; the
  /// kernels' parameters are copied when captured. The stream must be one
  /// of its own (not the legacy default stream) and the driver must
  /// haveGraphs(). If `enqueue` throws, the capture ends and the exception
  /// propagates.
  GraphExec capture(const std::function<void()> &enqueue) const;

private:
  Stream(std::shared_ptr<const Device> device, CUstream stream, bool owned)
      : device_(std::move(device)), stream_(stream), owned_(owned) {}
  void checkRange(const DeviceBuffer &buffer, size_t bytes, size_t offset,
                  const char *what) const;
  std::shared_ptr<const Device> device_;
  CUstream stream_ = nullptr;
  bool owned_ = true;
};

/// An instantiated CUDA graph (cuGraphInstantiateWithFlags); move-only.
class GraphExec {
public:
  GraphExec() = default;
  ~GraphExec();
  GraphExec(GraphExec &&other) noexcept;
  GraphExec &operator=(GraphExec &&other) noexcept;
  explicit operator bool() const { return exec_ != nullptr; }
  /// Runs the graph once on `stream`.
  void launch(const Stream &stream) const;

private:
  friend class Stream;
  GraphExec(std::shared_ptr<const Device> device, CUgraphExec exec)
      : device_(std::move(device)), exec_(exec) {}
  void release() noexcept;
  std::shared_ptr<const Device> device_;
  CUgraphExec exec_ = nullptr;
};

/// A timing event (cuEventCreate with default flags).
class Event {
public:
  explicit Event(std::shared_ptr<const Device> device);
  ~Event();
  Event(const Event &) = delete;
  Event &operator=(const Event &) = delete;

  void record(const Stream &stream) const;
  void synchronize() const;
  /// Milliseconds from `start` to this event, both recorded and complete.
  float millisecondsSince(const Event &start) const;

private:
  std::shared_ptr<const Device> device_;
  CUevent event_ = nullptr;
};

/// A cubin (or fatbin, or NUL-terminated PTX) loaded with cuModuleLoadData.
/// `origin` names it in messages, e.g. "layer.so".
class Module {
public:
  Module(std::shared_ptr<const Device> device, const void *image,
         std::string origin);
  ~Module();
  Module(const Module &) = delete;
  Module &operator=(const Module &) = delete;

  /// The kernel `name`; a missing one is MOERT_ERROR_ABI naming it.
  Kernel kernel(const std::string &name) const;

private:
  std::shared_ptr<const Device> device_;
  std::string origin_;
  CUmodule module_ = nullptr;
};

} // namespace moert::cuda

#endif // MOERT_SRC_CUDA_DRIVER_H
