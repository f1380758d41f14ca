/*===- moert.h - libmoert: the moec layer runtime, C API ------------------===*
 *
 * libmoert loads a layer compiled by `moec compile` (LAYER.so, see
 * docs/abi.md), fills its weights from a safetensors checkpoint and runs it.
 * docs/runtime.md describes the error model, weight loading and threading.
 *
 * Conventions:
 *  - Every fallible function returns a moert_status; MOERT_OK is 0. On
 *    failure, moert_last_error() gives a one-line message for the calling
 *    thread naming the file or tensor and the problem. Nothing throws or
 *    aborts across this API.
 *  - Handles are opaque. A moert_layer owns everything it allocated;
 *    moert_layer_close() frees it all and unloads the library.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOERT_MOERT_H
#define MOERT_MOERT_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define MOERT_API
#else
#define MOERT_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The layer ABI version this runtime implements (docs/abi.md). */
#define MOERT_ABI_VERSION 1

typedef enum moert_status {
  MOERT_OK = 0,
  /* NULL handle, negative token count, thread count out of range. */
  MOERT_ERROR_INVALID_ARGUMENT = 1,
  /* A file cannot be opened, read or written. */
  MOERT_ERROR_IO = 2,
  /* A malformed file (safetensors, .npy) or layer metadata. */
  MOERT_ERROR_FORMAT = 3,
  /* Not a moec layer, another ABI version, or dlopen failed. */
  MOERT_ERROR_ABI = 4,
  /* The checkpoint or input does not fit the layer: missing tensor, wrong
   * shape or dtype. */
  MOERT_ERROR_MISMATCH = 5,
  MOERT_ERROR_OUT_OF_MEMORY = 6,
  /* A call out of order, e.g. forward before the weights are loaded. */
  MOERT_ERROR_STATE = 7,
  /* A feature this build lacks. */
  MOERT_ERROR_UNSUPPORTED = 8,
  /* A bug, or an OS failure such as starting threads. */
  MOERT_ERROR_INTERNAL = 9,
  /* No usable CUDA driver or device: libcuda.so.1 is missing or older than
   * CUDA 11, cuInit fails, no such device, or the device's architecture is
   * not the one the layer was compiled for. */
  MOERT_ERROR_NO_DEVICE = 10
} moert_status;

typedef struct moert_layer moert_layer;

/* --- Errors and versions ------------------------------------------------ */

/* The message of the last failed call on this thread ("" if none). Valid
 * until the next failing call on the same thread; successful calls leave it
 * unchanged. */
MOERT_API const char *moert_last_error(void);

/* A short name for a status, e.g. "format error". Never NULL. */
MOERT_API const char *moert_status_string(moert_status status);

/* MOERT_ABI_VERSION of the library actually loaded. */
MOERT_API uint32_t moert_abi_version(void);

/* --- Opening a layer ---------------------------------------------------- */

/* Loads LAYER.so (dlopen with RTLD_NOW | RTLD_LOCAL), checks its ABI version
 * and validates its metadata (for a cuda layer also its launch plan and
 * kernel image; no GPU or driver is needed to open one). On success *out
 * owns the layer; on failure *out is set to NULL. A path without '/' is
 * taken relative to the current directory, not searched for in the library
 * path. */
MOERT_API moert_status moert_layer_open(const char *so_path, moert_layer **out);

/* Frees the layer's weights (on the device too), threads and statistics and
 * unloads the library. NULL is a no-op. No other call may be using the
 * layer. */
MOERT_API void moert_layer_close(moert_layer *layer);

/* --- Layer properties (from the metadata; 0 / NULL for a NULL layer) ---- */

/* The metadata JSON as embedded in the library (docs/abi.md). */
MOERT_API const char *moert_layer_metadata(const moert_layer *layer);
MOERT_API const char *moert_layer_family(const moert_layer *layer);
MOERT_API int64_t moert_layer_hidden_size(const moert_layer *layer);
MOERT_API int64_t moert_layer_num_experts(const moert_layer *layer);
MOERT_API int64_t moert_layer_top_k(const moert_layer *layer);
/* 1 if the runtime may split a batch into chunks (see docs/abi.md). */
MOERT_API int moert_layer_token_independent(const moert_layer *layer);
/* What the layer was compiled for: "cpu" or "cuda". */
MOERT_API const char *moert_layer_device(const moert_layer *layer);

/* --- Weights ------------------------------------------------------------ */

/* Fills every `weight` argument from a safetensors file: tensor
 * `prefix + name` ({e} replaced by 0..E-1 for stacked arguments), stored as
 * F32, BF16 or F16, converted to the argument's dtype and packed into its
 * layout (docs/runtime.md). Checks presence, dtype and shape of every tensor
 * before converting any. `prefix` may be NULL (""). Replaces weights loaded
 * earlier only on success. Waits for running forward calls.
 * For a cuda layer this is where the GPU is first used: after the checks,
 * the first successful call loads the driver, opens CUDA device 0, checks
 * its architecture (MOERT_ERROR_NO_DEVICE), loads the kernel image and
 * looks up its kernels; the converted weights are then uploaded once and
 * not kept on the host. */
MOERT_API moert_status moert_layer_load_weights(moert_layer *layer,
                                                const char *safetensors_path,
                                                const char *prefix);

/* --- Running ------------------------------------------------------------ */

/* Threads used by one forward call, the caller included: n >= 1, or 0 for
 * one per hardware thread. The default is 1. A cuda layer accepts it, but
 * its forward calls do not use it (only the conversion of weights does). */
MOERT_API moert_status moert_layer_set_threads(moert_layer *layer, int n);

/* y[tokens, hidden] = layer(x[tokens, hidden]), both dense row-major f32;
 * y must not overlap x. tokens == 0 does nothing (x and y may be NULL).
 * Token-independent layers run in chunks of at most 8192 tokens, spread over
 * the layer's threads; the result is bit-identical for any thread count.
 * Several threads may call this on one layer at once.
 * A cuda layer copies x to the device, runs its launch plan once on the
 * layer's stream and copies y back: x and y stay host memory, and the call
 * returns when y is there. Concurrent calls on one cuda layer are
 * serialised (they share its device buffers and stream). */
MOERT_API moert_status moert_layer_forward(moert_layer *layer, const float *x,
                                           int64_t tokens, float *y);

/* Cuda layers, on device memory: y[tokens, hidden] = layer(x[tokens, hidden])
 * with x and y device pointers (CUdeviceptr values, f32, dense row-major,
 * not overlapping) on CUDA device 0's primary context (the one the CUDA
 * runtime API uses), enqueued on `stream` (a CUstream; NULL is the legacy
 * default stream). The call enqueues the launch plan, its kernels reading x
 * and writing y where they are (16-byte aligned pointers; others go through
 * the layer's device arena with a device copy each way), and returns: no
 * host synchronisation and no host copies, so it can be captured in a CUDA
 * graph. The layer's statistics are not updated (that would need a copy
 * to the host). The arena is shared by all calls on the layer: calls must
 * be ordered on the device (one stream, or streams the caller orders); a
 * moert_layer_forward after them first waits for the latest one's stream.
 * When a call needs a larger arena than any before, it first waits
 * for the previous call's stream; moert_layer_cuda_reserve sizes the arena
 * ahead (do so before capturing a graph). tokens == 0 enqueues nothing.
 * A cpu layer: MOERT_ERROR_INVALID_ARGUMENT. Errors of kernels surface at
 * the caller's next synchronisation, not here. */
MOERT_API moert_status moert_layer_forward_cuda(moert_layer *layer,
                                                uint64_t x, int64_t tokens,
                                                uint64_t y, void *stream);

/* Grows a cuda layer's device arena for calls of up to `tokens` tokens
 * (moert_layer_workspace_bytes(layer, tokens) bytes), after its weights are
 * loaded. */
MOERT_API moert_status moert_layer_cuda_reserve(moert_layer *layer,
                                                int64_t tokens);

/* Upper bound on the heap memory one forward call of `tokens` tokens uses
 * besides x, y and the weights: the layer's own scratch for the chunks that
 * run at once, plus the runtime's per-call buffers.
 * For a cuda layer: the device memory the call needs besides the weights,
 * i.e. its copy of x and the launch plan's buffers (the layer's device
 * arena for `tokens`); SIZE_MAX if the plan cannot be sized for `tokens`. */
MOERT_API size_t moert_layer_workspace_bytes(const moert_layer *layer,
                                             int64_t tokens);

/* --- Expert-load statistics --------------------------------------------- */

/* Token slots routed to each expert, summed over all forward calls since
 * open or the last reset: tokens_per_expert[num_experts] and the number of
 * tokens those calls processed. Either pointer may be NULL. */
MOERT_API moert_status moert_layer_stats(const moert_layer *layer,
                                         int64_t *tokens_per_expert,
                                         int64_t *total_tokens);

/* The same for the most recently completed forward call alone. */
MOERT_API moert_status moert_layer_last_stats(const moert_layer *layer,
                                              int64_t *tokens_per_expert,
                                              int64_t *tokens);

/* Zeroes both the running and the last call's statistics. */
MOERT_API moert_status moert_layer_reset_stats(moert_layer *layer);

/* --- CUDA devices ------------------------------------------------------ */

/* Describes CUDA device `device` (0: the first one the driver lists, after
 * CUDA_VISIBLE_DEVICES): its name, NUL-terminated and cut to name_size - 1
 * bytes, and its compute capability, e.g. 9.0 for an H100/H200. Any output
 * may be NULL; they are written only on success. Loads the NVIDIA driver
 * with dlopen("libcuda.so.1") (the environment variable MOERT_LIBCUDA
 * overrides the path) and calls cuInit; creates no context. Without a
 * driver or device: MOERT_ERROR_NO_DEVICE, and moert_last_error() says
 * which. libmoert itself never needs CUDA to load. */
MOERT_API moert_status moert_cuda_device_info(int device, char *name,
                                              size_t name_size, int *sm_major,
                                              int *sm_minor);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOERT_MOERT_H */
