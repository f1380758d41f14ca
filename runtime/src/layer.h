//===- layer.h - A loaded moec layer: weights, threads, stats --*- C++ -*-===//
//
// The C API (api.cpp) is a thin shell over this class. Locking: forward()
// and the weight conversion hold stateMutex_ shared; replacing weights or
// the thread pool holds it exclusively, so they wait for running calls.
// Statistics have their own mutex, taken once per forward call. A cuda
// layer (metadata "device": "cuda") runs through its CudaLayer, whose own
// mutex serialises its forward calls and weight uploads.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_LAYER_H
#define MOERT_SRC_LAYER_H

#include "runtime/src/aligned_buffer.h"
#include "runtime/src/cuda_layer.h"
#include "runtime/src/metadata.h"
#include "runtime/src/thread_pool.h"

#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

namespace moert {

class SafetensorsFile;

/// Token-independent layers run in chunks of at most this many tokens, to
/// bound the layer's scratch memory (metadata: fixed + per_token * T).
constexpr int64_t kMaxChunkTokens = 8192;
/// Chunks for threads are not cut smaller than this (tiles stay full).
constexpr int64_t kMinChunkTokens = 16;
constexpr int kMaxThreads = 1024;

class Layer {
public:
  static std::unique_ptr<Layer> open(const std::string &path);
  ~Layer();
  Layer(const Layer &) = delete;
  Layer &operator=(const Layer &) = delete;

  const std::string &path() const { return path_; }
  const std::string &metadataJson() const { return metadataJson_; }
  const LayerMetadata &metadata() const { return metadata_; }

  void loadWeights(const std::string &safetensorsPath,
                   const std::string &prefix);
  void setThreads(int n);
  void forward(const float *x, int64_t tokens, float *y);
  /// Cuda layers only: the forward on device memory and the caller's
  /// stream, and the arena sized ahead (CudaLayer::enqueueForward).
  void forwardCuda(uint64_t x, int64_t tokens, uint64_t y, void *stream);
  void reserveCuda(int64_t tokens);
  size_t workspaceBytes(int64_t tokens) const;

  void stats(int64_t *tokensPerExpert, int64_t *tokens) const;
  void lastStats(int64_t *tokensPerExpert, int64_t *tokens) const;
  void resetStats();

private:
  struct LibraryCloser {
    void operator()(void *handle) const;
  };
  using ForwardFn = void (*)(void **);
  using SetThreadsFn = void (*)(int);

  Layer() = default;
  int64_t chunkTokens(int64_t tokens) const;
  /// The checks every forward does on its arguments.
  void checkCall(const char *what, bool xGiven, int64_t tokens,
                 bool yGiven) const;
  /// The cuda layer, with its weights; otherwise an error naming `what`.
  CudaLayer &requireCuda(const char *what) const;
  void callLayer(const float *x, int64_t tokens, float *y,
                 int64_t *counts) const;
  /// Finds and checks every weight tensor, calls `afterChecks`, then
  /// converts them: the weights by argument index.
  std::vector<AlignedBuffer>
  packWeights(const SafetensorsFile &file, const std::string &prefix,
              const std::function<void()> &afterChecks) const;
  void recordStats(const std::vector<int64_t> &counts, int64_t tokens);

  // Declared first so that it is closed last, after everything it ran.
  std::unique_ptr<void, LibraryCloser> library_;
  // Cuda layers; closed before the library that holds its image.
  std::unique_ptr<CudaLayer> cuda_;
  ForwardFn forward_ = nullptr;             // cpu layers only
  SetThreadsFn ompSetNumThreads_ = nullptr; // OpenMP layers only
  std::string path_;
  std::string metadataJson_;
  LayerMetadata metadata_;

  mutable std::shared_mutex stateMutex_;
  std::vector<AlignedBuffer> weights_; // by argument index; cpu layers only
  bool weightsLoaded_ = false;
  int threads_ = 1;
  std::unique_ptr<ThreadPool> pool_; // null when threads_ == 1

  mutable std::mutex statsMutex_;
  std::vector<int64_t> totalCounts_, lastCounts_;
  int64_t totalTokens_ = 0, lastTokens_ = 0;
};

} // namespace moert

#endif // MOERT_SRC_LAYER_H
