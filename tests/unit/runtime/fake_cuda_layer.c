/*===- fake_cuda_layer.c - A stand-in for a layer compiled for cuda -------===*
 *
 * Exports what `moec compile --target cuda` does (docs/abi.md, "CUDA
 * layers"): moec_abi_version, moec_layer_metadata with "device": "cuda" and
 * a launch plan, and moec_cuda_image, a 32-byte fatbin (header only) that
 * the fake driver (fake_libcuda.c) loads. No moec_forward. The arguments
 * are fake_layer.c's (hidden 8, 4 experts, top 2; experts.{e}.w1.weight as
 * bf16), so the same checkpoints fit. The default plan:
 *   buffers: 0 f32 [T, 4], 1 f32 [T, 8], 2 i64 [4]
 *   route   grid [ceil(T / 128), 1, 1] block [128, 1, 1]  (x, gate, b0)
 *   expert  grid [ceil(T / 16), 2, 1]  block [32, 1, 1]   (x, b0, w1, b1)
 *   free b0
 *   count   grid [1, 1, 1]             block [1, 1, 1]    (b2)
 *   results b1, b2
 * Read at every call, for tests of what the runtime refuses:
 *   FAKE_CUDA_PLAN   the "cuda" object's JSON instead ("none": no "cuda")
 *   FAKE_CUDA_IMAGE  null (no image), elf (not a fatbin), small (8 bytes),
 *                    truncated (the header claims more than the size),
 *                    misaligned (not on 16 bytes)
 *
 *===----------------------------------------------------------------------===*/

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PLAN                                                           \
  "{\"arch\": \"sm_90a\", \"image\": \"fatbin\", "                             \
  "\"buffers\": [{\"dtype\": \"f32\", \"shape\": [\"T\", 4]}, "                \
  "{\"dtype\": \"f32\", \"shape\": [\"T\", 8]}, "                              \
  "{\"dtype\": \"i64\", \"shape\": [4]}], "                                    \
  "\"steps\": ["                                                               \
  "{\"launch\": \"route\", \"grid\": [[\"ceildivui\", \"T\", 128], 1, 1], "    \
  "\"block\": [128, 1, 1], "                                                   \
  "\"args\": [{\"arg\": 0}, {\"arg\": 1}, {\"buffer\": 0}]}, "                 \
  "{\"launch\": \"expert\", \"grid\": [[\"ceildivui\", \"T\", 16], 2, 1], "    \
  "\"block\": [32, 1, 1], \"args\": [{\"arg\": 0}, {\"buffer\": 0}, "          \
  "{\"arg\": 2}, {\"buffer\": 1}]}, "                                          \
  "{\"free\": 0}, "                                                            \
  "{\"launch\": \"count\", \"grid\": [1, 1, 1], \"block\": [1, 1, 1], "        \
  "\"args\": [{\"buffer\": 2}]}], "                                            \
  "\"results\": [{\"buffer\": 1}, {\"buffer\": 2}]}"

uint32_t moec_abi_version(void) { return 1; }

const char *moec_layer_metadata(void) {
  static char text[16384];
  const char *plan = getenv("FAKE_CUDA_PLAN");
  int none = plan && strcmp(plan, "none") == 0;
  snprintf(text, sizeof text,
           "{\"abi_version\": 1, \"moec_version\": \"test\", "
           "\"device\": \"cuda\", \"family\": \"fake\", \"hidden_size\": 8, "
           "\"num_experts\": 4, \"top_k\": 2, \"token_independent\": true, "
           "\"workspace_bytes_per_token\": 100, "
           "\"workspace_bytes_fixed\": 1000, "
           "\"arguments\": ["
           "{\"name\": \"x\", \"role\": \"input\", \"dtype\": \"f32\", "
           "\"shape\": [-1, 8]},"
           "{\"name\": \"gate.weight\", \"role\": \"weight\", \"dtype\": "
           "\"f32\", \"shape\": [4, 8]},"
           "{\"name\": \"experts.{e}.w1.weight\", \"role\": \"weight\", "
           "\"dtype\": \"bf16\", \"shape\": [4, 3, 8], \"stacked\": true},"
           "{\"name\": \"output\", \"role\": \"output\", \"dtype\": \"f32\", "
           "\"shape\": [-1, 8]},"
           "{\"name\": \"tokens_per_expert\", \"role\": \"stats\", "
           "\"dtype\": \"i64\", \"shape\": [4]}]%s%s}",
           none ? "" : ", \"cuda\": ",
           none   ? ""
           : plan ? plan
                  : DEFAULT_PLAN);
  return text;
}

/* A fatbin header (magic, version 1, header 16 bytes, 16 bytes follow) and
 * 16 bytes of "code"; then room for the variants. */
static const unsigned char fatbin[64] __attribute__((aligned(16))) = {
    0x50, 0xed, 0x55, 0xba, 1, 0, 16,  0,   16,  0,
    0,    0,    0,    0,    0, 0, 'f', 'a', 'k', 'e'};
static unsigned char misaligned[64] __attribute__((aligned(16)));
static const char elf[48] __attribute__((aligned(16))) =
    "\x7f"
    "ELF kernels: route expert count";

const void *moec_cuda_image(uint64_t *size) {
  const char *variant = getenv("FAKE_CUDA_IMAGE");
  *size = 32;
  if (!variant || !*variant)
    return fatbin;
  if (strcmp(variant, "null") == 0)
    return NULL;
  if (strcmp(variant, "elf") == 0)
    return elf;
  if (strcmp(variant, "small") == 0) {
    *size = 8;
    return fatbin;
  }
  if (strcmp(variant, "truncated") == 0) {
    *size = 24;
    return fatbin;
  }
  memcpy(misaligned + 1, fatbin, 32); /* "misaligned" */
  return misaligned + 1;
}
