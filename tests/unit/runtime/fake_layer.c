/*===- fake_layer.c - A stand-in for a moec-compiled layer ---------------===*
 *
 * Exports the three ABI symbols of docs/abi.md with trivial arithmetic, so
 * the runtime's loading, descriptors, chunking and threading can be tested
 * without the compiler. Per token t (hidden 8, 4 experts, top 2):
 *   y[t][h] = 2 * x[t][h] + gate.weight[1][h] + experts.3.w1.weight[2][h]
 *   expert e = bits 13..14 of x[t][0]; counts e and (e + 1) % 4.
 * Variants (compile definitions): FAKE_ABI_VERSION=n, FAKE_NO_FORWARD,
 * FAKE_TOKEN_DEPENDENT (token_independent false), FAKE_BAD_METADATA,
 * FAKE_PACKED (experts.{e}.w1.weight as bf16 in panels of 2: [4, 2, 8, 2],
 * the last panel half padding, which must be zero), FAKE_PACKED with
 * FAKE_K_PACK=2 (the same panels with pairs of inputs, "k_pack": 2:
 * [4, 2, 4, 4]), FAKE_DEVICE_CUDA ("device": "cuda" in the metadata).
 * fake_*() let tests see what the runtime passed.
 *
 *===----------------------------------------------------------------------===*/

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#ifndef FAKE_ABI_VERSION
#define FAKE_ABI_VERSION 1
#endif
#ifdef FAKE_TOKEN_DEPENDENT
#define FAKE_TOKEN_INDEPENDENT "false"
#else
#define FAKE_TOKEN_INDEPENDENT "true"
#endif

#if defined(FAKE_PACKED) && FAKE_K_PACK == 2
#define FAKE_W1                                                                \
  "\"dtype\": \"bf16\", \"shape\": [4, 3, 8], \"layout\": "                    \
  "\"panels\", \"panel\": 2, \"k_pack\": 2, \"packed_shape\": [4, 2, 4, 4]"
#elif defined(FAKE_PACKED)
#define FAKE_W1                                                                \
  "\"dtype\": \"bf16\", \"shape\": [4, 3, 8], \"layout\": "                    \
  "\"panels\", \"panel\": 2, \"packed_shape\": [4, 2, 8, 2]"
#else
#define FAKE_W1 "\"dtype\": \"f32\", \"shape\": [4, 3, 8]"
#endif

#ifdef FAKE_DEVICE_CUDA
#define FAKE_DEVICE "\"device\": \"cuda\", "
#else
#define FAKE_DEVICE ""
#endif

#define HIDDEN 8
#define EXPERTS 4
#define WIDTH 3

static atomic_long calls, maxTokens, descriptorErrors;

uint32_t moec_abi_version(void) { return FAKE_ABI_VERSION; }

const char *moec_layer_metadata(void) {
#ifdef FAKE_BAD_METADATA
  return "{\"abi_version\": 1, \"family\": \"fake\", \"hidden_size\": 8";
#else
  return "{\"abi_version\": 1, \"moec_version\": \"test\", " FAKE_DEVICE
         "\"family\": \"fake\", \"hidden_size\": 8, \"num_experts\": 4, "
         "\"top_k\": 2, "
         "\"token_independent\": " FAKE_TOKEN_INDEPENDENT ", "
         "\"workspace_bytes_per_token\": 100, \"workspace_bytes_fixed\": 1000, "
         "\"arguments\": ["
         "{\"name\": \"x\", \"role\": \"input\", \"dtype\": \"f32\", "
         "\"shape\": [-1, 8]},"
         "{\"name\": \"gate.weight\", \"role\": \"weight\", \"dtype\": "
         "\"f32\", "
         "\"shape\": [4, 8]},"
         "{\"name\": \"experts.{e}.w1.weight\", \"role\": \"weight\", " FAKE_W1
         ", \"stacked\": true},"
         "{\"name\": \"output\", \"role\": \"output\", \"dtype\": \"f32\", "
         "\"shape\": [-1, 8]},"
         "{\"name\": \"tokens_per_expert\", \"role\": \"stats\", "
         "\"dtype\": \"i64\", \"shape\": [4]}]}";
#endif
}

#ifndef FAKE_NO_FORWARD
typedef struct {
  void *allocated, *aligned;
  int64_t offset, sizes[4], strides[4];
} Memref4;
typedef struct {
  void *allocated, *aligned;
  int64_t offset, sizes[3], strides[3];
} Memref3;
typedef struct {
  void *allocated, *aligned;
  int64_t offset, sizes[2], strides[2];
} Memref2;
typedef struct {
  void *allocated, *aligned;
  int64_t offset, sizes[1], strides[1];
} Memref1;

/* Dense, row-major, offset 0, allocated == aligned (docs/abi.md). */
static int dense(void *allocated, void *aligned, int64_t offset,
                 const int64_t *sizes, const int64_t *strides, int rank,
                 const int64_t *want) {
  int64_t stride = 1;
  if (allocated != aligned || offset != 0 || !aligned)
    return 0;
  for (int i = rank - 1; i >= 0; --i) {
    if ((want[i] >= 0 && sizes[i] != want[i]) || strides[i] != stride)
      return 0;
    stride *= sizes[i];
  }
  return 1;
}

#define DENSE(m, rank, ...)                                                    \
  dense((m)->allocated, (m)->aligned, (m)->offset, (m)->sizes, (m)->strides,   \
        rank, (const int64_t[]){__VA_ARGS__})

#if defined(FAKE_PACKED) && FAKE_K_PACK == 2
/* experts.3.w1.weight[2][h], from
 * packed[e][o / 2][h / 2][(o % 2) * 2 + h % 2] in bf16. */
static float w1At(const Memref4 *w1, int h) {
  const uint16_t *packed = w1->aligned;
  uint32_t bits = (uint32_t)packed[((3 * 2 + 1) * (HIDDEN / 2) + h / 2) * 4 +
                                   0 * 2 + h % 2]
                  << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static int w1Ok(const Memref4 *w1) {
  const uint16_t *packed = w1->aligned;
  if (!DENSE(w1, 4, EXPERTS, 2, HIDDEN / 2, 4))
    return 0;
  for (int e = 0; e < EXPERTS; ++e) /* row 3 of each expert is padding */
    for (int h = 0; h < HIDDEN; ++h)
      if (packed[((e * 2 + 1) * (HIDDEN / 2) + h / 2) * 4 + 1 * 2 + h % 2] !=
          0)
        return 0;
  return 1;
}
#elif defined(FAKE_PACKED)
/* experts.3.w1.weight[2][h], from packed[e][o / 2][h][o % 2] in bf16. */
static float w1At(const Memref4 *w1, int h) {
  const uint16_t *packed = w1->aligned;
  uint32_t bits = (uint32_t)packed[((3 * 2 + 1) * HIDDEN + h) * 2 + 0] << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static int w1Ok(const Memref4 *w1) {
  const uint16_t *packed = w1->aligned;
  if (!DENSE(w1, 4, EXPERTS, 2, HIDDEN, 2))
    return 0;
  for (int e = 0; e < EXPERTS; ++e) /* row 3 of each expert is padding */
    for (int h = 0; h < HIDDEN; ++h)
      if (packed[((e * 2 + 1) * HIDDEN + h) * 2 + 1] != 0)
        return 0;
  return 1;
}
#else
static float w1At(const Memref3 *w1, int h) {
  const float *w = w1->aligned;
  return w[(3 * WIDTH + 2) * HIDDEN + h];
}

static int w1Ok(const Memref3 *w1) {
  return DENSE(w1, 3, EXPERTS, WIDTH, HIDDEN);
}
#endif

void moec_forward(void **args) {
  Memref2 *x = args[0], *gate = args[1], *y = args[3];
#ifdef FAKE_PACKED
  Memref4 *w1 = args[2];
#else
  Memref3 *w1 = args[2];
#endif
  Memref1 *stats = args[4];
  int64_t tokens = x->sizes[0];
  int ok = DENSE(x, 2, -1, HIDDEN) && DENSE(y, 2, tokens, HIDDEN) &&
           DENSE(gate, 2, EXPERTS, HIDDEN) && w1Ok(w1) &&
           DENSE(stats, 1, EXPERTS) && (uintptr_t)gate->aligned % 64 == 0 &&
           (uintptr_t)w1->aligned % 64 == 0;
  if (!ok) {
    atomic_fetch_add(&descriptorErrors, 1);
    return;
  }
  atomic_fetch_add(&calls, 1);
  long seen = atomic_load(&maxTokens);
  while (tokens > seen &&
         !atomic_compare_exchange_weak(&maxTokens, &seen, (long)tokens))
    ;

  const float *in = x->aligned, *g = gate->aligned;
  float *out = y->aligned;
  int64_t *counts = stats->aligned;
  for (int e = 0; e < EXPERTS; ++e)
    counts[e] = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    const float *row = in + t * HIDDEN;
    for (int h = 0; h < HIDDEN; ++h)
      out[t * HIDDEN + h] = 2 * row[h] + g[1 * HIDDEN + h] + w1At(w1, h);
    uint32_t bits;
    memcpy(&bits, &row[0], sizeof bits);
    int e = (bits >> 13) & 3;
    counts[e] += 1;
    counts[(e + 1) % EXPERTS] += 1;
  }
}
#endif

long fake_calls(void) { return atomic_load(&calls); }
long fake_max_tokens(void) { return atomic_load(&maxTokens); }
long fake_descriptor_errors(void) { return atomic_load(&descriptorErrors); }
void fake_reset(void) {
  atomic_store(&calls, 0);
  atomic_store(&maxTokens, 0);
  atomic_store(&descriptorErrors, 0);
}
