//===- cuda_bench.h - moe-bench on a CUDA device ------------------*- C++ -*-===//
//
// The GPU half of moe-bench (--device cuda): the device's copy bandwidth, a
// probe of its own, and the compiled layer timed on device memory with CUDA
// events around moert_layer_forward_cuda (no host copies in the timed part).
// The driver comes through libmoert's loader (dlopen, MOERT_LIBCUDA).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_BENCH_CUDA_BENCH_H
#define MOE_BENCH_CUDA_BENCH_H

#include "moert/moert.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace moebench {

struct CudaCopyProbe {
  std::string device; // e.g. "NVIDIA H200"
  int smMajor = 0, smMinor = 0;
  double gbps = 0;    // bytes read + written per second, best of the runs
  size_t bufferBytes = 0;
};

/// Device 0's device-to-device copy bandwidth: `repeats` copies of
/// `bytes` (each counted as read and written), timed with events.
CudaCopyProbe probeCudaCopy(size_t bytes = size_t(256) << 20, int repeats = 20);

/// A cuda layer with its weights loaded, run on device memory.
class CudaLayerTimer {
public:
  /// x: [maxTokens, hidden] on the host, uploaded once.
  CudaLayerTimer(moert_layer *layer, const float *x, int64_t maxTokens,
                 int64_t hidden);
  ~CudaLayerTimer();
  /// Per run: ms between events recorded around one forward of T tokens.
  /// With `graph`, the forward is captured once into a CUDA graph (as a
  /// serving loop would) and each run launches the graph.
  std::vector<double> time(int64_t tokens, int warmup, int repeats,
                           const std::function<void(int, int)> &progress,
                           bool graph = false);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace moebench

#endif // MOE_BENCH_CUDA_BENCH_H
