//===- convert.cpp - Conversions between stored float formats ------------===//

#include "runtime/src/convert.h"

#include <cstring>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error                                                                         \
    "libmoert reads little-endian files directly and needs a little-endian host"
#endif

namespace moert {

namespace {
float fromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint32_t bitsOf(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

/// `value >> shift`, rounded to nearest, ties to even (0 < shift < 32).
uint32_t shiftRoundEven(uint32_t value, unsigned shift) {
  uint32_t kept = value >> shift, rest = value & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  return kept + (rest > half || (rest == half && (kept & 1)));
}

template <FloatFormat F> float load(const unsigned char *p) {
  if constexpr (F == FloatFormat::F32) {
    float f;
    std::memcpy(&f, p, sizeof f);
    return f;
  } else {
    uint16_t h;
    std::memcpy(&h, p, sizeof h);
    return F == FloatFormat::BF16 ? bf16ToF32(h) : f16ToF32(h);
  }
}

template <FloatFormat F> void store(float value, unsigned char *p) {
  if constexpr (F == FloatFormat::F32) {
    std::memcpy(p, &value, sizeof value);
  } else {
    uint16_t h = F == FloatFormat::BF16 ? f32ToBF16(value) : f32ToF16(value);
    std::memcpy(p, &h, sizeof h);
  }
}

/// One loop per format pair, so that nothing is dispatched per element.
template <FloatFormat From, FloatFormat To>
void convertAs(const void *src, void *dst, size_t count) {
  auto *in = static_cast<const unsigned char *>(src);
  auto *out = static_cast<unsigned char *>(dst);
  for (size_t i = 0; i < count; ++i)
    store<To>(load<From>(in + i * formatSize(From)), out + i * formatSize(To));
}

template <FloatFormat From>
void convertFrom(const void *src, FloatFormat to, void *dst, size_t count) {
  switch (to) {
  case FloatFormat::F32:
    return convertAs<From, FloatFormat::F32>(src, dst, count);
  case FloatFormat::BF16:
    return convertAs<From, FloatFormat::BF16>(src, dst, count);
  case FloatFormat::F16:
    return convertAs<From, FloatFormat::F16>(src, dst, count);
  }
}
} // namespace

// BF16 is the top half of an f32.
float bf16ToF32(uint16_t bits) { return fromBits(uint32_t(bits) << 16); }

float f16ToF32(uint16_t bits) {
  uint32_t sign = uint32_t(bits >> 15) << 31;
  uint32_t exponent = (bits >> 10) & 0x1f;
  uint32_t mantissa = bits & 0x3ff;
  if (exponent == 0x1f) // Inf or NaN; the payload (and quiet bit) carries over.
    return fromBits(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) // Normal: rebias 15 -> 127.
    return fromBits(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0)
    return fromBits(sign);
  // Subnormal (mantissa * 2^-24): normalise, since it is normal in f32.
  int shift = 0;
  while (!(mantissa & 0x400)) {
    mantissa <<= 1;
    ++shift;
  }
  return fromBits(sign | (uint32_t(113 - shift) << 23) |
                  ((mantissa & 0x3ff) << 13));
}

uint16_t f32ToBF16(float value) {
  uint32_t bits = bitsOf(value);
  if ((bits & 0x7fffffff) > 0x7f800000) // NaN: keep sign, make it quiet.
    return uint16_t((bits >> 16) | 0x40);
  return uint16_t(shiftRoundEven(bits, 16)); // A carry rounds up to Inf.
}

uint16_t f32ToF16(float value) {
  uint32_t bits = bitsOf(value);
  uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  uint32_t magnitude = bits & 0x7fffffff;
  if (magnitude > 0x7f800000) // NaN: quiet, with the payload's top bits.
    return sign | 0x7e00 | ((magnitude >> 13) & 0x3ff);
  if (magnitude >= 0x477ff000) // >= 65520 rounds past 65504: Inf.
    return sign | 0x7c00;
  if (magnitude >= 0x38800000) // Normal: rebias 127 -> 15, round 13 bits.
    return sign | uint16_t(shiftRoundEven(magnitude - 0x38000000, 13));
  if (magnitude < 0x33000000) // Below 2^-25: rounds to zero.
    return sign;
  // Subnormal in f16: (1.m * 2^e) in units of 2^-24.
  uint32_t exponent = magnitude >> 23;
  uint32_t mantissa = (magnitude & 0x7fffff) | 0x800000;
  return sign | uint16_t(shiftRoundEven(mantissa, 126 - exponent));
}

void convertFloats(FloatFormat from, const void *src, FloatFormat to, void *dst,
                   size_t count) {
  if (count == 0)
    return;
  if (from == to) {
    std::memcpy(dst, src, count * formatSize(from));
    return;
  }
  switch (from) {
  case FloatFormat::F32:
    return convertFrom<FloatFormat::F32>(src, to, dst, count);
  case FloatFormat::BF16:
    return convertFrom<FloatFormat::BF16>(src, to, dst, count);
  case FloatFormat::F16:
    return convertFrom<FloatFormat::F16>(src, to, dst, count);
  }
}

} // namespace moert
