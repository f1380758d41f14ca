//===- cuda_bench.cpp - moe-bench on a CUDA device ------------------------===//

#include "cuda_bench.h"

#include "spec.h"

#include "runtime/src/cuda_driver.h"
#include "runtime/src/error.h"

#include <fmt/format.h>

#include <algorithm>

namespace moebench {

using namespace moert::cuda;

namespace {
std::shared_ptr<const Device> openDevice() {
  return Device::open(Driver::load(), 0);
}
} // namespace

CudaCopyProbe probeCudaCopy(size_t bytes, int repeats) {
  auto device = openDevice();
  CudaCopyProbe probe;
  probe.device = device->info().name;
  probe.smMajor = device->info().smMajor;
  probe.smMinor = device->info().smMinor;
  probe.bufferBytes = bytes;
  DeviceBuffer a(device, bytes), b(device, bytes);
  Stream stream(device);
  Event start(device), stop(device);
  stream.copy(b.get(), a.get(), bytes); // warm-up
  double best = 0;
  for (int i = 0; i < repeats; ++i) {
    start.record(stream);
    stream.copy(b.get(), a.get(), bytes);
    stop.record(stream);
    stop.synchronize();
    double ms = stop.millisecondsSince(start);
    if (ms > 0)
      best = std::max(best, 2.0 * double(bytes) / (ms * 1e-3) * 1e-9);
  }
  probe.gbps = best;
  return probe;
}

struct CudaLayerTimer::Impl {
  moert_layer *layer;
  int64_t hidden;
  std::shared_ptr<const Device> device;
  DeviceBuffer x, y;
  std::unique_ptr<Stream> stream;
};

CudaLayerTimer::CudaLayerTimer(moert_layer *layer, const float *x,
                               int64_t maxTokens, int64_t hidden)
    : impl_(new Impl{layer, hidden, openDevice(), {}, {}, {}}) {
  size_t bytes = size_t(maxTokens * hidden) * sizeof(float);
  impl_->x = DeviceBuffer(impl_->device, bytes);
  impl_->y = DeviceBuffer(impl_->device, bytes);
  impl_->stream = std::make_unique<Stream>(impl_->device);
  impl_->stream->upload(impl_->x, x, bytes);
  impl_->stream->synchronize();
  moert_status s = moert_layer_cuda_reserve(layer, maxTokens);
  if (s != MOERT_OK)
    throw Error(fmt::format("moert_layer_cuda_reserve: {}", moert_last_error()));
}

CudaLayerTimer::~CudaLayerTimer() = default;

std::vector<double>
CudaLayerTimer::time(int64_t tokens, int warmup, int repeats,
                     const std::function<void(int, int)> &progress,
                     bool graph) {
  Impl &m = *impl_;
  Event start(m.device), stop(m.device);
  auto forward = [&] {
    moert_status s = moert_layer_forward_cuda(
        m.layer, m.x.get(), tokens, m.y.get(),
        reinterpret_cast<void *>(m.stream->get()));
    if (s != MOERT_OK)
      throw Error(fmt::format("moert_layer_forward_cuda: {}", moert_last_error()));
  };
  GraphExec captured;
  if (graph)
    captured = m.stream->capture(forward);
  std::vector<double> samples;
  int total = warmup + repeats;
  for (int i = 0; i < total; ++i) {
    progress(i, total);
    start.record(*m.stream);
    if (graph)
      captured.launch(*m.stream);
    else
      forward();
    stop.record(*m.stream);
    stop.synchronize(); // kernel faults surface here
    if (i >= warmup)
      samples.push_back(stop.millisecondsSince(start));
  }
  progress(total, total);
  return samples;
}

} // namespace moebench
