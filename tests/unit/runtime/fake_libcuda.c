/*===- fake_libcuda.c - A stand-in for the NVIDIA driver (libcuda.so.1) ---===*
 *
 * Exports the driver entry points the runtime resolves (cuda_driver.h), so
 * that loading, device selection, error messages and the RAII helpers can be
 * tested without a GPU: the tests point MOERT_LIBCUDA at this library. It is
 * never named libcuda.so.1, so nothing picks it up by accident.
 *
 * FAKE_CUDA_MODE selects the machine, read at every call:
 *   no_device     cuInit returns CUDA_ERROR_NO_DEVICE (100)
 *   zero_devices  cuInit succeeds, cuDeviceGetCount reports 0
 *   sm80          one device "Fake A100", compute capability 8.0
 *   h200 (default) one device "Fake H200", compute capability 9.0
 * "Device" memory is malloc'd host memory (allocations over 1 GiB fail with
 * CUDA_ERROR_OUT_OF_MEMORY). Memory, stream and module calls fail with
 * CUDA_ERROR_INVALID_CONTEXT unless a context is current on the calling
 * thread, as the real driver's do. A module image is text starting with
 * "\x7f" "ELF" listing its kernels by name; kernel "fill_bytes" (params: a
 * CUdeviceptr and an int) sets gridDim.x * blockDim.x bytes to the int.
 * FAKE_NO_LAUNCH leaves cuLaunchKernel out (a driver too old).
 * fake_live() counts what is not yet released, for leak checks.
 *
 *===----------------------------------------------------------------------===*/

#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;

enum {
  SUCCESS = 0,
  INVALID_VALUE = 1,
  OUT_OF_MEMORY = 2,
  NOT_INITIALIZED = 3,
  NO_DEVICE = 100,
  INVALID_DEVICE = 101,
  INVALID_IMAGE = 200,
  INVALID_CONTEXT = 201,
  NOT_FOUND = 500
};

static struct {
  CUresult code;
  const char *name, *text;
} const errors[] = {
    {SUCCESS, "CUDA_SUCCESS", "no error"},
    {INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE",
     "device kernel image is invalid"},
    {INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
};

static struct CUctx_st { int unused; } primary;
static int initialised, contextRefs, buffers, streams, modules;
static _Thread_local CUcontext current;

static int mode(const char *name) {
  const char *m = getenv("FAKE_CUDA_MODE");
  return strcmp(m && *m ? m : "h200", name) == 0;
}

static int deviceCount(void) {
  return mode("zero_devices") || mode("no_device") ? 0 : 1;
}

/* --- Errors and initialisation ------------------------------------------ */

CUresult cuGetErrorName(CUresult error, const char **name) {
  for (size_t i = 0; i < sizeof errors / sizeof *errors; ++i)
    if (errors[i].code == error) {
      *name = errors[i].name;
      return SUCCESS;
    }
  *name = NULL;
  return INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult error, const char **text) {
  for (size_t i = 0; i < sizeof errors / sizeof *errors; ++i)
    if (errors[i].code == error) {
      *text = errors[i].text;
      return SUCCESS;
    }
  *text = NULL;
  return INVALID_VALUE;
}

CUresult cuInit(unsigned flags) {
  if (flags != 0)
    return INVALID_VALUE;
  if (mode("no_device"))
    return NO_DEVICE;
  initialised = 1;
  return SUCCESS;
}

CUresult cuDriverGetVersion(int *version) {
  *version = 13000;
  return SUCCESS;
}

/* --- Devices and contexts ------------------------------------------------ */

CUresult cuDeviceGetCount(int *count) {
  if (!initialised)
    return NOT_INITIALIZED;
  *count = deviceCount();
  return SUCCESS;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
  if (!initialised)
    return NOT_INITIALIZED;
  if (ordinal < 0 || ordinal >= deviceCount())
    return INVALID_DEVICE;
  *device = ordinal;
  return SUCCESS;
}

CUresult cuDeviceGetName(char *name, int length, CUdevice device) {
  const char *n = mode("sm80") ? "Fake A100" : "Fake H200";
  if (device != 0 || length <= 0)
    return INVALID_VALUE;
  strncpy(name, n, (size_t)length - 1);
  name[length - 1] = '\0';
  return SUCCESS;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice device) {
  if (device != 0)
    return INVALID_DEVICE;
  if (attribute == 75) /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR */
    *value = mode("sm80") ? 8 : 9;
  else if (attribute == 76) /* ..._MINOR */
    *value = 0;
  else
    return INVALID_VALUE;
  return SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice device) {
  if (device != 0)
    return INVALID_DEVICE;
  *bytes = mode("sm80") ? (size_t)80 << 30 : (size_t)141 << 30;
  return SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *context, CUdevice device) {
  if (device != 0)
    return INVALID_DEVICE;
  ++contextRefs;
  *context = &primary;
  return SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  if (device != 0 || contextRefs == 0)
    return INVALID_VALUE;
  --contextRefs;
  return SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext context) {
  if (context && (context != &primary || contextRefs == 0))
    return INVALID_CONTEXT;
  current = context;
  return SUCCESS;
}

#define NEED_CONTEXT                                                           \
  if (!current)                                                                \
  return INVALID_CONTEXT

/* --- Memory and streams --------------------------------------------------- */

CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
  NEED_CONTEXT;
  if (bytes == 0)
    return INVALID_VALUE;
  if (bytes > (size_t)1 << 30)
    return OUT_OF_MEMORY;
  *ptr = (CUdeviceptr)(size_t)malloc(bytes);
  if (!*ptr)
    return OUT_OF_MEMORY;
  ++buffers;
  return SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr ptr) {
  NEED_CONTEXT;
  free((void *)(size_t)ptr);
  --buffers;
  return SUCCESS;
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t bytes,
                              CUstream stream) {
  NEED_CONTEXT;
  (void)stream;
  memcpy((void *)(size_t)dst, src, bytes);
  return SUCCESS;
}

CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t bytes,
                              CUstream stream) {
  NEED_CONTEXT;
  (void)stream;
  memcpy(dst, (const void *)(size_t)src, bytes);
  return SUCCESS;
}

CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t count,
                         CUstream stream) {
  NEED_CONTEXT;
  (void)stream;
  memset((void *)(size_t)dst, value, count);
  return SUCCESS;
}

CUresult cuStreamCreate(CUstream *stream, unsigned flags) {
  NEED_CONTEXT;
  (void)flags;
  *stream = malloc(1);
  ++streams;
  return SUCCESS;
}

CUresult cuStreamSynchronize(CUstream stream) {
  NEED_CONTEXT;
  return stream ? SUCCESS : INVALID_VALUE;
}

CUresult cuStreamDestroy_v2(CUstream stream) {
  NEED_CONTEXT;
  free(stream);
  --streams;
  return SUCCESS;
}

/* --- Modules and launches ------------------------------------------------- */

CUresult cuModuleLoadData(CUmodule *module, const void *image) {
  size_t n;
  NEED_CONTEXT;
  if (memcmp(image,
             "\x7f"
             "ELF",
             4) != 0)
    return INVALID_IMAGE;
  n = strlen((const char *)image) + 1;
  *module = malloc(n);
  memcpy(*module, image, n);
  ++modules;
  return SUCCESS;
}

/* A kernel is its name's place in the module's text, as a whole word. */
CUresult cuModuleGetFunction(CUfunction *function, CUmodule module,
                             const char *name) {
  char *text = (char *)module;
  size_t n = strlen(name);
  NEED_CONTEXT;
  for (char *at = strstr(text, name); at; at = strstr(at + 1, name))
    if (at > text && at[-1] == ' ' && (at[n] == ' ' || at[n] == '\0')) {
      *function = (CUfunction)at;
      return SUCCESS;
    }
  return NOT_FOUND;
}

CUresult cuModuleUnload(CUmodule module) {
  NEED_CONTEXT;
  free(module);
  --modules;
  return SUCCESS;
}

#ifndef FAKE_NO_LAUNCH
CUresult cuLaunchKernel(CUfunction f, unsigned gridX, unsigned gridY,
                        unsigned gridZ, unsigned blockX, unsigned blockY,
                        unsigned blockZ, unsigned sharedBytes, CUstream stream,
                        void **params, void **extra) {
  NEED_CONTEXT;
  (void)sharedBytes;
  if (!f || !stream || extra || !gridX || !gridY || !gridZ || !blockX ||
      !blockY || !blockZ)
    return INVALID_VALUE;
  if (strncmp((const char *)f, "fill_bytes", 10) == 0) {
    CUdeviceptr ptr = *(CUdeviceptr *)params[0];
    int value = *(int *)params[1];
    memset((void *)(size_t)ptr, value, (size_t)gridX * blockX);
  }
  return SUCCESS;
}
#endif

/* Contexts retained + buffers + streams + modules not yet released. */
int fake_live(void) { return contextRefs + buffers + streams + modules; }
