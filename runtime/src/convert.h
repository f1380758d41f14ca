//===- convert.h - Conversions between stored float formats ----*- C++ -*-===//
//
// Checkpoints hold weights as F32, BF16 or F16; a layer takes each weight in
// the format its metadata names. Widening (to f32) is exact, including
// subnormals, infinities and NaN payloads; narrowing rounds to nearest, ties
// to even (as torch's .to() does), overflowing to infinity and keeping NaNs
// NaN.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_CONVERT_H
#define MOERT_SRC_CONVERT_H

#include <cstddef>
#include <cstdint>

namespace moert {

enum class FloatFormat { F32, BF16, F16 };

constexpr size_t formatSize(FloatFormat f) {
  return f == FloatFormat::F32 ? 4 : 2;
}

float bf16ToF32(uint16_t bits);
float f16ToF32(uint16_t bits);
uint16_t f32ToBF16(float value);
uint16_t f32ToF16(float value);

/// Converts `count` little-endian elements at `src` (any alignment, as in a
/// mapped file) from `from` to `to` at `dst` (aligned for `to`).
void convertFloats(FloatFormat from, const void *src, FloatFormat to, void *dst,
                   size_t count);

} // namespace moert

#endif // MOERT_SRC_CONVERT_H
