//===- weights_test.cpp - Packing weights into panels (docs/abi.md) ------===//
//
// packPanels against the layout's formula, element by element, written out
// here independently of the packer:
//   packed[.., o / P, i / K, (o % P) * K + i % K] = W[.., o, i],
// zero where o >= out or i >= in.
//
//===----------------------------------------------------------------------===//

#include "runtime/src/convert.h"
#include "runtime/src/metadata.h"
#include "runtime/src/weights.h"

#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

using namespace moert;

namespace {
/// W[l][o][i] for `lead` matrices [out, in]: distinct, and not all exact in
/// bf16, so that the f32 -> bf16 rounding is exercised too.
std::vector<float> matrices(int64_t lead, int64_t out, int64_t in) {
  std::vector<float> w;
  for (int64_t l = 0; l < lead; ++l)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i)
        w.push_back((l % 2 ? -1.0f : 1.0f) *
                    (100.0f * float(l) + 10.0f * float(o) + float(i) + 1.0f +
                     1.0f / 3.0f));
  return w;
}

uint32_t f32Bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

/// Packs `lead` matrices [out, in] of f32 into `to` (shape [out, in] when
/// lead is 0, else [lead, out, in]) and checks every element of the packed
/// buffer, and that nothing is written past it.
void checkPacking(FloatFormat to, int64_t lead, int64_t out, int64_t in,
                  int64_t P, int64_t K) {
  CAPTURE(to == FloatFormat::F32 ? "f32" : "bf16", lead, out, in, P, K);
  std::vector<int64_t> shape = {out, in};
  if (lead)
    shape.insert(shape.begin(), lead);
  int64_t matrixCount = lead ? lead : 1;
  std::vector<float> w = matrices(matrixCount, out, in);

  // The storage shape, from the formula.
  int64_t panels = (out + P - 1) / P, pairs = (in + K - 1) / K;
  std::vector<int64_t> packedShape = {panels, pairs, P * K};
  if (lead)
    packedShape.insert(packedShape.begin(), lead);
  REQUIRE(panelShape(shape, P, K) == packedShape);
  size_t packed = size_t(matrixCount * panels * pairs * P * K);

  // A guard of 64 elements after the buffer, which must stay untouched.
  size_t size = formatSize(to), guard = 64;
  std::vector<uint32_t> storage((packed + guard) * size / 4 + 1, 0xa5a5a5a5u);
  auto *bytes = reinterpret_cast<unsigned char *>(storage.data());
  packPanels(FloatFormat::F32, w.data(), to, bytes, shape, P, K);

  auto element = [&](size_t index) -> uint32_t {
    if (size == 4) {
      uint32_t v;
      std::memcpy(&v, bytes + index * 4, 4);
      return v;
    }
    uint16_t v;
    std::memcpy(&v, bytes + index * 2, 2);
    return v;
  };
  auto expected = [&](float value) -> uint32_t {
    return to == FloatFormat::F32 ? f32Bits(value) : f32ToBF16(value);
  };

  size_t index = 0, mismatches = 0;
  for (int64_t l = 0; l < matrixCount; ++l)
    for (int64_t p = 0; p < panels; ++p)
      for (int64_t b = 0; b < pairs; ++b)
        for (int64_t lane = 0; lane < P * K; ++lane, ++index) {
          int64_t o = p * P + lane / K, i = b * K + lane % K;
          uint32_t want = o < out && i < in
                              ? expected(w[size_t((l * out + o) * in + i)])
                              : 0u; // padding: +0.0
          if (element(index) != want && ++mismatches <= 5)
            FAIL_CHECK("packed[" << l << "][" << p << "][" << b << "]["
                                 << lane << "] (o = " << o << ", i = " << i
                                 << ") is " << element(index) << ", expected "
                                 << want);
        }
  CHECK(index == packed);
  CHECK(mismatches == 0);
  for (size_t g = packed * size; g < (packed + guard) * size; ++g)
    if (bytes[g] != 0xa5) {
      FAIL_CHECK("byte " << g << " past the packed buffer was written");
      break;
    }
}
} // namespace

TEST_CASE("weights: panels with pairs of inputs, odd out and in",
          "[weights]") {
  // out = 5, in = 7, P = 4, K = 2: a partial panel (3 padding outputs) and a
  // partial pair (input 7 is padding) -> [2, 4, 8].
  CHECK(panelShape({5, 7}, 4, 2) == std::vector<int64_t>{2, 4, 8});
  for (FloatFormat to : {FloatFormat::BF16, FloatFormat::F32})
    checkPacking(to, 0, 5, 7, 4, 2);
}

TEST_CASE("weights: panels with pairs of inputs, stacked experts",
          "[weights]") {
  // An expert-leading dimension: each expert's matrix packs on its own.
  for (FloatFormat to : {FloatFormat::BF16, FloatFormat::F32}) {
    checkPacking(to, 3, 5, 7, 4, 2);
    checkPacking(to, 2, 8, 6, 4, 2);
  }
}

TEST_CASE("weights: panel packing over sizes, k_pack 1 and 2", "[weights]") {
  // K = 1 is the plain panel layout: packed[o / P][i][o % P].
  const int64_t sizes[][2] = {{1, 1}, {1, 2}, {2, 1}, {4, 8},  {5, 7},
                              {8, 8}, {9, 3}, {3, 9}, {16, 5}, {7, 16}};
  for (FloatFormat to : {FloatFormat::BF16, FloatFormat::F32})
    for (int64_t K : {1, 2})
      for (int64_t P : {1, 2, 4, 8, 16})
        for (const auto &s : sizes)
          checkPacking(to, s[0] % 2 ? 2 : 0, s[0], s[1], P, K);
}
