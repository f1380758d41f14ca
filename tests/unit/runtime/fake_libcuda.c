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
 * "Device" memory is 256-byte aligned host memory (allocations over 1 GiB
 * fail with CUDA_ERROR_OUT_OF_MEMORY), filled when allocated with
 * fake_pattern(): 8-byte words, word w of an allocation holding the small
 * int64 fake_pattern(w) (1 ... 65536), so "results" nothing wrote are
 * recognisable. Memory, stream and module calls fail with
 * CUDA_ERROR_INVALID_CONTEXT unless a context is current on the calling
 * thread, as the real driver's do.
 * A module image is either text starting with "\x7f" "ELF" listing its
 * kernels by name, or a fatbin (magic 0xba55ed50), which has every kernel
 * but the one named by FAKE_CUDA_MISSING_KERNEL. Kernel "fill_bytes"
 * (params: a CUdeviceptr and an int) sets gridDim.x * blockDim.x bytes to
 * the int; other kernels do nothing.
 * FAKE_CUDA_LAUNCH_LOG=FILE appends one line per launch to FILE:
 *   NAME GX GY GZ BX BY BZ N P0 ... P(N-1)
 * with the grid, the block and the N 8-byte parameters (each printed as a
 * signed int64) of a NULL-terminated kernelParams array, as libmoert
 * passes for cuda layers.
 * FAKE_NO_LAUNCH leaves cuLaunchKernel out (a driver too old).
 * fake_live() counts what is not yet released, for leak checks;
 * fake_module_loads() and fake_kernel_lookups() count those calls;
 * fake_host_copies() the copies between host and device,
 * fake_synchronizations() the stream and event synchronisations, and
 * fake_last_launch_stream() is the stream of the latest launch (0 for the
 * legacy default stream, -1 before any).
 * Events record nothing; the elapsed time between two is 1.5 ms.
 * CUDA graphs: while a stream captures (cuStreamBeginCapture_v2), launches
 * on it are recorded with copies of their parameters, not run or logged;
 * copies, memsets and synchronisations of that stream fail with
 * CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, as the driver's do. Launching an
 * instantiated graph runs (and logs) its launches in order on the stream
 * of the graph launch. fake_captures() and fake_graph_launches() count
 * those calls; graphs and their instances count in fake_live().
 * Dynamic shared memory: a launch asking for more than 48 KB fails with
 * CUDA_ERROR_INVALID_VALUE unless cuFuncSetAttribute raised the kernel's
 * MAX_DYNAMIC_SHARED_SIZE_BYTES that far (at most the device's opt-in limit:
 * 227 KB on the H200, 163 KB on the A100); fake_shared_opt_ins() counts the
 * calls. cuTensorMapEncodeTiled checks what the driver documents (64-byte
 * aligned map, 16-byte aligned address, rank 1..5, sizes, 16-byte strides,
 * boxes up to 256, a 128-byte swizzle's innermost box) and writes a map
 * whose first word is the tensor's address (so a launch log shows where a
 * map parameter points), then the rank, sizes, strides and box;
 * fake_tensor_maps() counts the maps encoded. FAKE_NO_TENSOR_MAPS leaves
 * both entry points out (a driver older than CUDA 12).
 *
 *===----------------------------------------------------------------------===*/

#include <stdint.h>
#include <stdio.h>
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
  NOT_FOUND = 500,
  ILLEGAL_STATE = 401,
  CAPTURE_UNSUPPORTED = 900
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
    {ILLEGAL_STATE, "CUDA_ERROR_ILLEGAL_STATE",
     "the operation cannot be performed in the present state"},
    {CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
     "operation not permitted when stream is capturing"},
};

static struct CUctx_st { int unused; } primary;
static int initialised, contextRefs, buffers, streams, modules;
static int moduleLoads, kernelLookups, events;
static int hostCopies, synchronizations;
static int graphs, captures, graphLaunches;
/* The stream capturing now (one at a time), NULL when none. */
static CUstream capturing;
static int64_t lastLaunchStream = -1;
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
  else if (attribute == 97) /* ..._MAX_SHARED_MEMORY_PER_BLOCK_OPTIN */
    *value = mode("sm80") ? 166912 : 232448;
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

/* Work a capturing stream cannot take. */
#define NOT_WHILE_CAPTURING(stream)                                            \
  if (capturing && (stream) == capturing)                                      \
  return CAPTURE_UNSUPPORTED

/* --- Memory and streams --------------------------------------------------- */

/* Word w of every new allocation: a hash of w in [1, 65536]. */
int64_t fake_pattern(uint64_t w) {
  w += 0x9e3779b97f4a7c15ull;
  w = (w ^ (w >> 30)) * 0xbf58476d1ce4e5b9ull;
  w = (w ^ (w >> 27)) * 0x94d049bb133111ebull;
  return (int64_t)((w ^ (w >> 31)) & 0xffff) + 1;
}

CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
  size_t rounded = (bytes + 255) / 256 * 256;
  unsigned char *memory;
  NEED_CONTEXT;
  if (bytes == 0)
    return INVALID_VALUE;
  if (bytes > (size_t)1 << 30)
    return OUT_OF_MEMORY;
  memory = aligned_alloc(256, rounded);
  if (!memory)
    return OUT_OF_MEMORY;
  for (size_t at = 0; at < rounded; at += 8) {
    int64_t word = fake_pattern(at / 8);
    memcpy(memory + at, &word, 8);
  }
  *ptr = (CUdeviceptr)(size_t)memory;
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
  NOT_WHILE_CAPTURING(stream);
  (void)stream;
  memcpy((void *)(size_t)dst, src, bytes);
  ++hostCopies;
  return SUCCESS;
}

CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t bytes,
                              CUstream stream) {
  NEED_CONTEXT;
  NOT_WHILE_CAPTURING(stream);
  (void)stream;
  memcpy(dst, (const void *)(size_t)src, bytes);
  ++hostCopies;
  return SUCCESS;
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                              CUstream stream) {
  NEED_CONTEXT;
  NOT_WHILE_CAPTURING(stream);
  (void)stream;
  memmove((void *)(size_t)dst, (const void *)(size_t)src, bytes);
  return SUCCESS;
}

CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t count,
                         CUstream stream) {
  NEED_CONTEXT;
  NOT_WHILE_CAPTURING(stream);
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
  NOT_WHILE_CAPTURING(stream);
  (void)stream; /* NULL: the legacy default stream */
  ++synchronizations;
  return SUCCESS;
}

CUresult cuStreamDestroy_v2(CUstream stream) {
  NEED_CONTEXT;
  free(stream);
  --streams;
  return SUCCESS;
}

/* --- Events --------------------------------------------------------------- */

struct CUevent_st {
  int recorded;
};

CUresult cuEventCreate(struct CUevent_st **event, unsigned flags) {
  NEED_CONTEXT;
  (void)flags;
  *event = calloc(1, sizeof(struct CUevent_st));
  ++events;
  return SUCCESS;
}

CUresult cuEventRecord(struct CUevent_st *event, CUstream stream) {
  NEED_CONTEXT;
  (void)stream;
  if (!event)
    return INVALID_VALUE;
  event->recorded = 1;
  return SUCCESS;
}

CUresult cuEventSynchronize(struct CUevent_st *event) {
  NEED_CONTEXT;
  ++synchronizations;
  return event && event->recorded ? SUCCESS : INVALID_VALUE;
}

CUresult cuEventElapsedTime(float *ms, struct CUevent_st *start,
                            struct CUevent_st *end) {
  NEED_CONTEXT;
  if (!start || !end || !start->recorded || !end->recorded)
    return INVALID_VALUE;
  *ms = 1.5f;
  return SUCCESS;
}

CUresult cuEventDestroy_v2(struct CUevent_st *event) {
  NEED_CONTEXT;
  free(event);
  --events;
  return SUCCESS;
}

/* --- Modules and launches ------------------------------------------------- */

/* A module: a copy of an ELF text image, or (fatbin) the names looked up. */
struct CUmod_st {
  int fatbin;
  char *text;
  char **names;
  size_t count;
};

CUresult cuModuleLoadData(CUmodule *module, const void *image) {
  static const unsigned char fatbin[4] = {0x50, 0xed, 0x55, 0xba};
  CUmodule m;
  NEED_CONTEXT;
  m = calloc(1, sizeof *m);
  if (memcmp(image, fatbin, 4) == 0) {
    m->fatbin = 1;
  } else if (memcmp(image,
                    "\x7f"
                    "ELF",
                    4) == 0) {
    size_t n = strlen((const char *)image) + 1;
    m->text = malloc(n);
    memcpy(m->text, image, n);
  } else {
    free(m);
    return INVALID_IMAGE;
  }
  *module = m;
  ++modules;
  ++moduleLoads;
  return SUCCESS;
}

/* A kernel is its name: in a text module its place in the text, as a whole
 * word; in a fatbin module a copy, kept until the module is unloaded. */
CUresult cuModuleGetFunction(CUfunction *function, CUmodule module,
                             const char *name) {
  size_t n = strlen(name);
  const char *missing = getenv("FAKE_CUDA_MISSING_KERNEL");
  NEED_CONTEXT;
  ++kernelLookups;
  if (module->fatbin) {
    if (missing && strcmp(missing, name) == 0)
      return NOT_FOUND;
    for (size_t i = 0; i < module->count; ++i)
      if (strcmp(module->names[i], name) == 0) {
        *function = (CUfunction)module->names[i];
        return SUCCESS;
      }
    module->names =
        realloc(module->names, (module->count + 1) * sizeof *module->names);
    module->names[module->count] = malloc(n + 1);
    memcpy(module->names[module->count], name, n + 1);
    *function = (CUfunction)module->names[module->count++];
    return SUCCESS;
  }
  for (char *at = strstr(module->text, name); at; at = strstr(at + 1, name))
    if (at > module->text && at[-1] == ' ' && (at[n] == ' ' || at[n] == '\0')) {
      *function = (CUfunction)at;
      return SUCCESS;
    }
  return NOT_FOUND;
}

CUresult cuModuleUnload(CUmodule module) {
  NEED_CONTEXT;
  for (size_t i = 0; i < module->count; ++i)
    free(module->names[i]);
  free(module->names);
  free(module->text);
  free(module);
  --modules;
  return SUCCESS;
}

/* The dynamic shared memory kernels were allowed (cuFuncSetAttribute). */
static struct {
  CUfunction f;
  int bytes;
} sharedLimits[64];

#ifndef FAKE_NO_LAUNCH
static int sharedLimit(CUfunction f) {
  for (int i = 0; i < 64; ++i)
    if (sharedLimits[i].f == f)
      return sharedLimits[i].bytes;
  return 48 * 1024;
}

/* One line per launch, see the header comment. */
static void logLaunch(const char *log, const char *name, const unsigned *dims,
                      void **params) {
  FILE *out = fopen(log, "a");
  size_t n = 0;
  if (!out)
    return;
  fprintf(out, "%.*s", (int)strcspn(name, " "), name);
  for (int i = 0; i < 6; ++i)
    fprintf(out, " %u", dims[i]);
  while (params && n < 4096 && params[n])
    ++n;
  fprintf(out, " %zu", n);
  for (size_t i = 0; i < n; ++i) {
    int64_t value;
    memcpy(&value, params[i], 8);
    fprintf(out, " %lld", (long long)value);
  }
  fputc('\n', out);
  fclose(out);
}

/* What a launch does: remember its stream, log it, run fill_bytes. */
static void runLaunch(CUfunction f, const unsigned *dims, CUstream stream,
                      void **params) {
  const char *log = getenv("FAKE_CUDA_LAUNCH_LOG");
  lastLaunchStream = (int64_t)(size_t)stream;
  if (log && *log)
    logLaunch(log, (const char *)f, dims, params);
  if (strncmp((const char *)f, "fill_bytes", 10) == 0) {
    CUdeviceptr ptr = *(CUdeviceptr *)params[0];
    int value = *(int *)params[1];
    memset((void *)(size_t)ptr, value, (size_t)dims[0] * dims[3]);
  }
}

/* A captured launch: its kernel, grid and block, and its parameters'
 * values (8 bytes each, as libmoert passes them). */
struct Launch {
  CUfunction f;
  unsigned dims[6];
  size_t count;
  int64_t *values;
};
/* A captured graph and an instantiated one hold the same: the launches. */
struct Launches {
  struct Launch *launches;
  size_t count;
};
struct CUgraph_st {
  struct Launches list;
};
struct CUgraphExec_st {
  struct Launches list;
};
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;
static struct Launches captured;

static void freeLaunches(struct Launches *list) {
  for (size_t i = 0; i < list->count; ++i)
    free(list->launches[i].values);
  free(list->launches);
  list->launches = NULL;
  list->count = 0;
}

static void record(CUfunction f, const unsigned *dims, void **params) {
  struct Launch launch = {f, {0}, 0, NULL};
  memcpy(launch.dims, dims, sizeof launch.dims);
  while (params && launch.count < 4096 && params[launch.count])
    ++launch.count;
  launch.values = malloc((launch.count + 1) * sizeof(int64_t));
  for (size_t i = 0; i < launch.count; ++i)
    memcpy(&launch.values[i], params[i], 8);
  captured.launches = realloc(captured.launches,
                              (captured.count + 1) * sizeof(struct Launch));
  captured.launches[captured.count++] = launch;
}

CUresult cuLaunchKernel(CUfunction f, unsigned gridX, unsigned gridY,
                        unsigned gridZ, unsigned blockX, unsigned blockY,
                        unsigned blockZ, unsigned sharedBytes, CUstream stream,
                        void **params, void **extra) {
  NEED_CONTEXT;
  if (!f || extra || !gridX || !gridY || !gridZ || !blockX ||
      !blockY || !blockZ)
    return INVALID_VALUE;
  if ((int)sharedBytes > sharedLimit(f))
    return INVALID_VALUE;
  const unsigned dims[6] = {gridX, gridY, gridZ, blockX, blockY, blockZ};
  if (capturing && stream == capturing)
    record(f, dims, params);
  else
    runLaunch(f, dims, stream, params);
  return SUCCESS;
}

CUresult cuStreamBeginCapture_v2(CUstream stream, int mode) {
  NEED_CONTEXT;
  (void)mode;
  if (!stream || capturing) /* not the legacy stream; one at a time here */
    return ILLEGAL_STATE;
  capturing = stream;
  ++captures;
  return SUCCESS;
}

CUresult cuStreamEndCapture(CUstream stream, CUgraph *graph) {
  NEED_CONTEXT;
  if (!capturing || stream != capturing)
    return ILLEGAL_STATE;
  capturing = NULL;
  *graph = malloc(sizeof **graph);
  (*graph)->list = captured;
  captured.launches = NULL;
  captured.count = 0;
  ++graphs;
  return SUCCESS;
}

CUresult cuGraphInstantiateWithFlags(CUgraphExec *exec, CUgraph graph,
                                     unsigned long long flags) {
  NEED_CONTEXT;
  (void)flags;
  if (!graph)
    return INVALID_VALUE;
  const struct Launches *from = &graph->list;
  *exec = malloc(sizeof **exec);
  (*exec)->list.count = from->count;
  (*exec)->list.launches = malloc((from->count + 1) * sizeof(struct Launch));
  for (size_t i = 0; i < from->count; ++i) {
    struct Launch launch = from->launches[i];
    launch.values = malloc((launch.count + 1) * sizeof(int64_t));
    memcpy(launch.values, from->launches[i].values,
           launch.count * sizeof(int64_t));
    (*exec)->list.launches[i] = launch;
  }
  ++graphs;
  return SUCCESS;
}

CUresult cuGraphLaunch(CUgraphExec exec, CUstream stream) {
  NEED_CONTEXT;
  NOT_WHILE_CAPTURING(stream);
  if (!exec)
    return INVALID_VALUE;
  for (size_t i = 0; i < exec->list.count; ++i) {
    struct Launch *launch = &exec->list.launches[i];
    void *params[4097];
    for (size_t p = 0; p < launch->count; ++p)
      params[p] = &launch->values[p];
    params[launch->count] = NULL;
    runLaunch(launch->f, launch->dims, stream, params);
  }
  ++graphLaunches;
  return SUCCESS;
}

/* Frees a graph or an instance: `object`, holding `list`. */
static CUresult destroyGraph(void *object, struct Launches *list) {
  NEED_CONTEXT;
  if (!object)
    return INVALID_VALUE;
  freeLaunches(list);
  free(object);
  --graphs;
  return SUCCESS;
}
CUresult cuGraphExecDestroy(CUgraphExec exec) {
  return destroyGraph(exec, exec ? &exec->list : NULL);
}
CUresult cuGraphDestroy(CUgraph graph) {
  return destroyGraph(graph, graph ? &graph->list : NULL);
}
#endif

/* Contexts retained + buffers + streams + modules + events + graphs (and
 * their instances) not yet released. */
#ifndef FAKE_NO_TENSOR_MAPS
static int sharedOptIns;

CUresult cuFuncSetAttribute(CUfunction f, int attribute, int value) {
  NEED_CONTEXT;
  int most = mode("sm80") ? 166912 : 232448;
  if (!f || attribute != 8 /* MAX_DYNAMIC_SHARED_SIZE_BYTES */ || value < 0 ||
      value > most)
    return INVALID_VALUE;
  ++sharedOptIns;
  for (int i = 0; i < 64; ++i)
    if (sharedLimits[i].f == f || !sharedLimits[i].f) {
      sharedLimits[i].f = f;
      sharedLimits[i].bytes = value;
      return SUCCESS;
    }
  return INVALID_VALUE;
}

static int tensorMaps;

/* cuda.h's CUtensorMap, under its tag (the runtime's pointer type). */
typedef struct CUtensorMap_st {
  _Alignas(64) unsigned long long opaque[16];
} CUtensorMap;

CUresult cuTensorMapEncodeTiled(CUtensorMap *tensorMap, int dataType,
                                uint32_t rank, void *address,
                                const uint64_t *dims,
                                const uint64_t *strides, const uint32_t *box,
                                const uint32_t *elementStrides, int interleave,
                                int swizzle, int l2Promotion, int oobFill) {
  static const int sizes[] = {1, 2, 4, 4, 8, 8, 2, 4, 8, 2, 4, 4, 4};
  if (!tensorMap)
    return INVALID_VALUE;
  uint64_t *map = (uint64_t *)tensorMap->opaque;
  if ((size_t)map % 64 || dataType < 0 || dataType > 12 ||
      rank < 1 || rank > 5 || (size_t)address % 16 || interleave != 0 ||
      swizzle < 0 || swizzle > 3 || l2Promotion < 0 || l2Promotion > 3 ||
      oobFill < 0 || oobFill > 1)
    return INVALID_VALUE;
  uint64_t element = (uint64_t)sizes[dataType];
  for (uint32_t d = 0; d < rank; ++d) {
    if (dims[d] == 0 || dims[d] > ((uint64_t)1 << 32) || box[d] == 0 ||
        box[d] > 256 || elementStrides[d] != 1)
      return INVALID_VALUE;
    if (d + 1 < rank &&
        (strides[d] % 16 || strides[d] < dims[d] * element ||
         (d > 0 && strides[d] < strides[d - 1] * dims[d])))
      return INVALID_VALUE;
  }
  uint64_t inner = box[0] * element;
  if (inner % 16 || (swizzle == 3 && inner > 128) ||
      (swizzle == 2 && inner > 64) || (swizzle == 1 && inner > 32))
    return INVALID_VALUE;
  memset(map, 0, 128);
  map[0] = (uint64_t)(size_t)address;
  map[1] = rank;
  for (uint32_t d = 0; d < rank; ++d) {
    map[2 + d] = dims[d];
    map[11 + d] = box[d];
    if (d + 1 < rank)
      map[7 + d] = strides[d];
  }
  ++tensorMaps;
  return SUCCESS;
}

int fake_tensor_maps(void) { return tensorMaps; }
int fake_shared_opt_ins(void) { return sharedOptIns; }
#endif

int fake_live(void) {
  return contextRefs + buffers + streams + modules + events + graphs;
}
int fake_captures(void) { return captures; }
int fake_graph_launches(void) { return graphLaunches; }
int fake_host_copies(void) { return hostCopies; }
int fake_synchronizations(void) { return synchronizations; }
int64_t fake_last_launch_stream(void) { return lastLaunchStream; }
int fake_module_loads(void) { return moduleLoads; }
int fake_kernel_lookups(void) { return kernelLookups; }
