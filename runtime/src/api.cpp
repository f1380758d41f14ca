//===- api.cpp - The C API: argument checks and the exception boundary ---===//
//
// Every entry point is noexcept in effect: guard() turns whatever the body
// throws into a moert_status and the thread's last-error message.
//
//===----------------------------------------------------------------------===//

#include "moert/moert.h"

#include "runtime/src/cuda_driver.h"
#include "runtime/src/error.h"
#include "runtime/src/layer.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

using moert::fail;
using moert::guard;

struct moert_layer {
  std::unique_ptr<moert::Layer> impl;
};

namespace {
/// The layer behind a handle, or an invalid-argument error naming `api`.
moert::Layer &layerOf(const moert_layer *layer, const char *api) {
  if (!layer || !layer->impl)
    fail(MOERT_ERROR_INVALID_ARGUMENT, "{}: layer is NULL", api);
  return *layer->impl;
}
} // namespace

extern "C" {

const char *moert_last_error(void) { return moert::lastError(); }

const char *moert_status_string(moert_status status) {
  // A C caller may pass any int; in C++ an enum without a fixed type holds
  // only its enumerators' range, so reading `status` as one would be
  // undefined for other values (UBSan: -fsanitize=enum). Read the int.
  int code;
  static_assert(sizeof code == sizeof status, "moert_status is int-sized");
  std::memcpy(&code, &status, sizeof code);
  switch (code) {
  case MOERT_OK:
    return "ok";
  case MOERT_ERROR_INVALID_ARGUMENT:
    return "invalid argument";
  case MOERT_ERROR_IO:
    return "I/O error";
  case MOERT_ERROR_FORMAT:
    return "format error";
  case MOERT_ERROR_ABI:
    return "ABI error";
  case MOERT_ERROR_MISMATCH:
    return "mismatch";
  case MOERT_ERROR_OUT_OF_MEMORY:
    return "out of memory";
  case MOERT_ERROR_STATE:
    return "invalid state";
  case MOERT_ERROR_UNSUPPORTED:
    return "unsupported";
  case MOERT_ERROR_INTERNAL:
    return "internal error";
  case MOERT_ERROR_NO_DEVICE:
    return "no CUDA device";
  }
  return "unknown status";
}

uint32_t moert_abi_version(void) { return MOERT_ABI_VERSION; }

moert_status moert_layer_open(const char *so_path, moert_layer **out) {
  return guard([&] {
    if (!out)
      fail(MOERT_ERROR_INVALID_ARGUMENT, "moert_layer_open: out is NULL");
    *out = nullptr;
    if (!so_path)
      fail(MOERT_ERROR_INVALID_ARGUMENT, "moert_layer_open: so_path is NULL");
    auto handle = std::make_unique<moert_layer>();
    handle->impl = moert::Layer::open(so_path);
    *out = handle.release();
  });
}

void moert_layer_close(moert_layer *layer) { delete layer; }

const char *moert_layer_metadata(const moert_layer *layer) {
  return layer ? layer->impl->metadataJson().c_str() : nullptr;
}

const char *moert_layer_family(const moert_layer *layer) {
  return layer ? layer->impl->metadata().family.c_str() : nullptr;
}

int64_t moert_layer_hidden_size(const moert_layer *layer) {
  return layer ? layer->impl->metadata().hiddenSize : 0;
}

int64_t moert_layer_num_experts(const moert_layer *layer) {
  return layer ? layer->impl->metadata().numExperts : 0;
}

int64_t moert_layer_top_k(const moert_layer *layer) {
  return layer ? layer->impl->metadata().topK : 0;
}

int moert_layer_token_independent(const moert_layer *layer) {
  return layer ? int(layer->impl->metadata().tokenIndependent) : 0;
}

const char *moert_layer_device(const moert_layer *layer) {
  return layer ? moert::deviceKindName(layer->impl->metadata().device).data()
               : nullptr;
}

moert_status moert_layer_load_weights(moert_layer *layer,
                                      const char *safetensors_path,
                                      const char *prefix) {
  return guard([&] {
    moert::Layer &l = layerOf(layer, "moert_layer_load_weights");
    if (!safetensors_path)
      fail(MOERT_ERROR_INVALID_ARGUMENT,
           "moert_layer_load_weights: safetensors_path is NULL");
    l.loadWeights(safetensors_path, prefix ? prefix : "");
  });
}

moert_status moert_layer_set_threads(moert_layer *layer, int n) {
  return guard(
      [&] { layerOf(layer, "moert_layer_set_threads").setThreads(n); });
}

moert_status moert_layer_forward(moert_layer *layer, const float *x,
                                 int64_t tokens, float *y) {
  return guard(
      [&] { layerOf(layer, "moert_layer_forward").forward(x, tokens, y); });
}

moert_status moert_layer_forward_cuda(moert_layer *layer, uint64_t x,
                                      int64_t tokens, uint64_t y,
                                      void *stream) {
  return guard([&] {
    layerOf(layer, "moert_layer_forward_cuda").forwardCuda(x, tokens, y, stream);
  });
}

moert_status moert_layer_cuda_reserve(moert_layer *layer, int64_t tokens) {
  return guard(
      [&] { layerOf(layer, "moert_layer_cuda_reserve").reserveCuda(tokens); });
}

size_t moert_layer_workspace_bytes(const moert_layer *layer, int64_t tokens) {
  try {
    return layer ? layer->impl->workspaceBytes(tokens) : 0;
  } catch (...) { // Only a lock can fail here; no bound is then known.
    return SIZE_MAX;
  }
}

moert_status moert_layer_stats(const moert_layer *layer,
                               int64_t *tokens_per_expert,
                               int64_t *total_tokens) {
  return guard([&] {
    layerOf(layer, "moert_layer_stats").stats(tokens_per_expert, total_tokens);
  });
}

moert_status moert_layer_last_stats(const moert_layer *layer,
                                    int64_t *tokens_per_expert,
                                    int64_t *tokens) {
  return guard([&] {
    layerOf(layer, "moert_layer_last_stats")
        .lastStats(tokens_per_expert, tokens);
  });
}

moert_status moert_layer_reset_stats(moert_layer *layer) {
  return guard([&] { layerOf(layer, "moert_layer_reset_stats").resetStats(); });
}

moert_status moert_cuda_device_info(int device, char *name, size_t name_size,
                                    int *sm_major, int *sm_minor) {
  return guard([&] {
    moert::cuda::DeviceInfo info =
        moert::cuda::Driver::load()->deviceInfo(device);
    if (name && name_size > 0) {
      size_t n = std::min(info.name.size(), name_size - 1);
      std::memcpy(name, info.name.data(), n);
      name[n] = '\0';
    }
    if (sm_major)
      *sm_major = info.smMajor;
    if (sm_minor)
      *sm_minor = info.smMinor;
  });
}

} // extern "C"
