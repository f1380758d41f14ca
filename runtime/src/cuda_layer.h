//===- cuda_layer.h - Running a cuda layer's launch plan -------*- C++ -*-===//
//
// The executor of a layer compiled with --target cuda: its fatbin, its
// weights on the device and its launch plan (cuda_plan.h), replayed with
// the driver (cuda_driver.h) for each forward call.
//
// Nothing here touches the driver until prepare(), which the layer calls
// when weights are loaded: opening a cuda layer needs no GPU. Then device 0
// (after CUDA_VISIBLE_DEVICES) is opened, its architecture checked against
// the plan's, the image loaded once and every kernel looked up once.
//
// A forward call uploads x into the layer's device arena (one allocation,
// grown when a larger T needs more and reused across calls; x and every
// plan buffer start on a 256-byte boundary, and buffers never share
// memory, so `free` steps are no-ops), launches the steps on the layer's
// stream, downloads the output and the statistics and synchronises once.
// The launches of such a host call are one CUDA graph per token count,
// captured at the first call with that count and replayed after (one
// launch instead of a dozen: what small batches pay in launch overhead).
// Graphs hold the arena's and the weights' addresses, so growing the arena
// or new weights drop them; at most kMaxGraphs are kept (the oldest goes).
// MOERT_CUDA_GRAPHS=0, or a driver without graphs, launches directly.
// MOERT_CUDA_PROFILE=FILE times each launch of a host call instead (CUDA
// events around every launch, no graph) and appends one JSON line per call
// to FILE: {"layer", "tokens", "total_ms", "steps": [{"step", "kernel",
// "ms"}, ...]}, for tuning.
// One mutex serialises forward calls (they share the arena and the stream)
// and weight uploads.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_CUDA_LAYER_H
#define MOERT_SRC_CUDA_LAYER_H

#include "runtime/src/aligned_buffer.h"
#include "runtime/src/cuda_driver.h"
#include "runtime/src/cuda_plan.h"
#include "runtime/src/metadata.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace moert {

class CudaLayer {
public:
  /// `metadata`: the layer's, with its plan (copied). `image`: the fatbin
  /// moec_cuda_image returned, checked here; it must outlive the CudaLayer
  /// (the library stays loaded). `origin` names the layer in messages.
  CudaLayer(const LayerMetadata &metadata, const void *image,
            uint64_t imageSize, std::string origin);
  ~CudaLayer();
  CudaLayer(const CudaLayer &) = delete;
  CudaLayer &operator=(const CudaLayer &) = delete;

  /// Loads the driver, opens device 0, checks its architecture, loads the
  /// image and looks up the plan's kernels; only the first successful call
  /// does anything.
  void prepare();
  /// Uploads the weights (by argument index, converted to the arguments'
  /// dtypes) and, once all are there, replaces those on the device.
  void setWeights(const std::vector<AlignedBuffer> &host);
  /// One run of the plan for `tokens` > 0: y[tokens, hidden] and the
  /// call's expert counts[num_experts] on the host.
  void forward(const float *x, int64_t tokens, float *y, int64_t *counts);
  /// The forward on device memory and the caller's `stream` (same device,
  /// its primary context): enqueues the plan reading x and writing the
  /// output into y (16-byte aligned pointers; others go through the arena
  /// with a device copy each way), and returns. No host synchronisation
  /// and no host copies, so a CUDA graph can capture it; the statistics are
  /// not read back. Calls must be ordered on the device (the arena is
  /// shared); growing the arena waits for the previous call's stream, so
  /// reserve() first where that must not happen (graph capture).
  void enqueueForward(cuda::CUdeviceptr x, int64_t tokens, cuda::CUdeviceptr y,
                      cuda::CUstream stream);
  /// Grows the arena for calls of up to `tokens` tokens now.
  void reserve(int64_t tokens);
  /// The device and the layer's stream (after prepare()).
  const std::shared_ptr<const cuda::Device> &device() const { return device_; }
  /// The device memory a call of `tokens` tokens needs: the arena holding x
  /// and the plan's buffers (SIZE_MAX if the plan cannot be evaluated).
  size_t workspaceBytes(int64_t tokens) const;

private:
  struct Call;
  void prepareLocked();
  void requireWeights() const;
  Call evaluate(int64_t tokens) const;
  /// The kernels' parameters: x at `x` and the output buffer at `y` (0:
  /// both in the arena).
  void bind(Call &call, int64_t tokens, cuda::CUdeviceptr x,
            cuda::CUdeviceptr y) const;
  /// The steps' launches on `stream`; `afterLaunch(step)` after each.
  void launchAll(const Call &call, const cuda::Stream &stream,
                 const std::function<void(size_t)> &afterLaunch = {}) const;
  /// The launches of a host call on the layer's stream: its graph for
  /// `tokens` (bound and captured now if there is none), or bind and
  /// launchAll.
  void launchHostCall(Call &call, int64_t tokens);
  /// launchAll with an event after each launch; appends the times to
  /// profilePath_ (synchronises the stream).
  void launchProfiled(const Call &call, int64_t tokens);
  /// Makes the arena at least `bytes` long, after `inFlight` (a stream that
  /// may still use the old arena) has finished.
  void growArena(uint64_t bytes, const cuda::Stream *inFlight);

  const LayerMetadata metadata_;
  const CudaPlan &plan_; // *metadata_.cuda
  const void *image_;
  std::string origin_;

  std::mutex mutex_; // forward calls and weight uploads
  std::shared_ptr<const cuda::Device> device_;
  std::unique_ptr<cuda::Stream> stream_;
  std::unique_ptr<cuda::Module> module_;
  std::vector<cuda::Kernel> kernels_;       // by step (empty for frees)
  std::vector<cuda::DeviceBuffer> weights_; // by argument
  cuda::DeviceBuffer arena_;
  // Host calls' graphs by token count, oldest first (after module_ and
  // arena_: destroyed before them).
  static constexpr size_t kMaxGraphs = 8;
  bool useGraphs_ = false;
  std::string profilePath_; // MOERT_CUDA_PROFILE
  std::vector<std::pair<int64_t, cuda::GraphExec>> graphs_;
  // The caller's stream of the latest enqueueForward, until a synchronised
  // call follows: the arena may be in use there.
  std::optional<cuda::Stream> lastCallerStream_;
};

} // namespace moert

#endif // MOERT_SRC_CUDA_LAYER_H
