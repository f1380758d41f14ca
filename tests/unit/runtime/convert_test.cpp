//===- convert_test.cpp - BF16/F16 to f32, bit-exact ---------------------===//

#include "runtime/src/convert.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

using namespace moert;

namespace {
uint32_t bitsOf(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
} // namespace

TEST_CASE("convert: bf16 values", "[convert]") {
  CHECK(bf16ToF32(0x3f80) == 1.0f);
  CHECK(bf16ToF32(0xc000) == -2.0f);
  CHECK(bf16ToF32(0x3e20) == 0.15625f);
  CHECK(bf16ToF32(0x7f80) == std::numeric_limits<float>::infinity());
  CHECK(bf16ToF32(0xff80) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(bf16ToF32(0x7fc0)));
  CHECK(bitsOf(bf16ToF32(0x7fc0)) == 0x7fc00000u);
  CHECK(bitsOf(bf16ToF32(0x8000)) == 0x80000000u);    // -0 keeps its sign
  CHECK(bf16ToF32(0x0001) == std::ldexp(1.0f, -133)); // smallest subnormal
}

TEST_CASE("convert: bf16 is exactly the top half of f32", "[convert]") {
  for (uint32_t h = 0; h <= 0xffff; ++h)
    REQUIRE(bitsOf(bf16ToF32(uint16_t(h))) == h << 16);
}

TEST_CASE("convert: f16 values", "[convert]") {
  CHECK(f16ToF32(0x3c00) == 1.0f);
  CHECK(f16ToF32(0xc000) == -2.0f);
  CHECK(f16ToF32(0x3555) == 0.333251953125f);
  CHECK(f16ToF32(0x7bff) == 65504.0f);                 // largest
  CHECK(f16ToF32(0x0400) == std::ldexp(1.0f, -14));    // smallest normal
  CHECK(f16ToF32(0x0001) == std::ldexp(1.0f, -24));    // smallest subnormal
  CHECK(f16ToF32(0x03ff) == std::ldexp(1023.0f, -24)); // largest subnormal
  CHECK(f16ToF32(0x0200) == std::ldexp(1.0f, -15));
  CHECK(f16ToF32(0x8001) == -std::ldexp(1.0f, -24));
  CHECK(f16ToF32(0x7c00) == std::numeric_limits<float>::infinity());
  CHECK(f16ToF32(0xfc00) == -std::numeric_limits<float>::infinity());
  CHECK(bitsOf(f16ToF32(0x0000)) == 0x00000000u);
  CHECK(bitsOf(f16ToF32(0x8000)) == 0x80000000u);
  // NaNs keep quietness, payload and sign.
  CHECK(bitsOf(f16ToF32(0x7e00)) == 0x7fc00000u);
  CHECK(bitsOf(f16ToF32(0x7c01)) == 0x7f802000u);
  CHECK(bitsOf(f16ToF32(0xfe01)) == 0xffc02000u);
}

#ifdef __FLT16_MANT_DIG__
TEST_CASE("convert: f16 agrees with the compiler's _Float16", "[convert]") {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    uint16_t bits = uint16_t(h);
    _Float16 half;
    std::memcpy(&half, &bits, sizeof half);
    float want = float(half), got = f16ToF32(bits);
    if (std::isnan(want))
      REQUIRE(std::isnan(got));
    else
      REQUIRE(bitsOf(got) == bitsOf(want));
  }
}
#endif

TEST_CASE("convert: f32 to bf16 rounds to nearest even", "[convert]") {
  CHECK(f32ToBF16(1.0f) == 0x3f80);
  CHECK(f32ToBF16(-2.0f) == 0xc000);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even 1.
  CHECK(f32ToBF16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);
  CHECK(f32ToBF16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
  CHECK(f32ToBF16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) ==
        0x3f81);
  CHECK(f32ToBF16(std::numeric_limits<float>::max()) == 0x7f80); // to Inf
  CHECK(f32ToBF16(-std::numeric_limits<float>::infinity()) == 0xff80);
  CHECK(f32ToBF16(std::ldexp(1.0f, -133)) == 0x0001); // smallest subnormal
  CHECK(f32ToBF16(std::ldexp(1.0f, -134)) == 0x0000); // its half: tie to 0
  uint32_t signalling = 0xff800001;                   // -NaN with a low payload
  float nan;
  std::memcpy(&nan, &signalling, 4);
  CHECK(f32ToBF16(nan) == 0xffc0);
  for (uint32_t h = 0; h <= 0xffff; ++h) // bf16 values survive the round trip
    if (!std::isnan(bf16ToF32(uint16_t(h))))
      REQUIRE(f32ToBF16(bf16ToF32(uint16_t(h))) == h);
}

TEST_CASE("convert: f32 to f16 rounds to nearest even", "[convert]") {
  CHECK(f32ToF16(1.0f) == 0x3c00);
  CHECK(f32ToF16(65504.0f) == 0x7bff);
  CHECK(f32ToF16(65519.0f) == 0x7bff);
  CHECK(f32ToF16(65520.0f) == 0x7c00); // the tie goes to the even Inf
  CHECK(f32ToF16(-1e10f) == 0xfc00);
  CHECK(f32ToF16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(f32ToF16(std::ldexp(1.0f, -25)) == 0x0000); // tie to even 0
  CHECK(f32ToF16(std::ldexp(1.5f, -25)) == 0x0001);
  CHECK(f32ToF16(std::ldexp(1.0f, -14) * (1 - std::ldexp(1.0f, -12))) ==
        0x0400);
  CHECK(f32ToF16(-0.0f) == 0x8000);
  CHECK(f32ToF16(std::numeric_limits<float>::quiet_NaN()) == 0x7e00);
  for (uint32_t h = 0; h <= 0xffff; ++h) // f16 values survive the round trip
    if (!std::isnan(f16ToF32(uint16_t(h))))
      REQUIRE(f32ToF16(f16ToF32(uint16_t(h))) == h);
}

#if defined(__FLT16_MANT_DIG__) || defined(__BFLT16_MANT_DIG__)
TEST_CASE("convert: narrowing agrees with the compiler", "[convert]") {
  // Every 997th f32, and every f32 whose low 16 bits sit at a rounding
  // boundary of either format.
  std::vector<uint32_t> samples;
  for (uint64_t b = 0; b <= 0xffffffffu; b += 997)
    samples.push_back(uint32_t(b));
  for (uint32_t high = 0; high <= 0xffff; ++high)
    for (uint32_t low : {0x0000u, 0x0fffu, 0x1000u, 0x1001u, 0x2000u, 0x3000u,
                         0x7fffu, 0x8000u, 0x8001u, 0xc000u})
      samples.push_back(high << 16 | low);
  for (uint32_t bits : samples) {
    float f;
    std::memcpy(&f, &bits, 4);
#ifdef __FLT16_MANT_DIG__
    _Float16 half = _Float16(f);
    uint16_t want;
    std::memcpy(&want, &half, 2);
    if (std::isnan(f))
      REQUIRE(std::isnan(f16ToF32(f32ToF16(f))));
    else
      REQUIRE(f32ToF16(f) == want);
#endif
#ifdef __BFLT16_MANT_DIG__
    __bf16 brain = __bf16(f);
    uint16_t wantB;
    std::memcpy(&wantB, &brain, 2);
    if (std::isnan(f))
      REQUIRE(std::isnan(bf16ToF32(f32ToBF16(f))));
    else
      REQUIRE(f32ToBF16(f) == wantB);
#endif
  }
}
#endif

TEST_CASE("convert: arrays between every pair of formats", "[convert]") {
  // Tensors in a mapped file start at any byte offset.
  const float values[4] = {1.0f, -2.0f, 0.15625f,
                           std::numeric_limits<float>::infinity()};
  const uint16_t brains[4] = {0x3f80, 0xc000, 0x3e20, 0x7f80};
  const uint16_t halves[4] = {0x3c00, 0xc000, 0x3100, 0x7c00};
  const void *sources[3] = {values, brains, halves};
  const FloatFormat formats[3] = {FloatFormat::F32, FloatFormat::BF16,
                                  FloatFormat::F16};
  for (int from = 0; from < 3; ++from)
    for (int to = 0; to < 3; ++to) {
      unsigned char raw[1 + sizeof values];
      std::memcpy(raw + 1, sources[from], 4 * formatSize(formats[from]));
      unsigned char out[sizeof values];
      convertFloats(formats[from], raw + 1, formats[to], out, 4);
      INFO("from " << from << " to " << to);
      CHECK(std::memcmp(out, sources[to], 4 * formatSize(formats[to])) == 0);
    }
  convertFloats(FloatFormat::F32, nullptr, FloatFormat::BF16, nullptr, 0);
}
