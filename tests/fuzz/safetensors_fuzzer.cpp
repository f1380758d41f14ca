//===- safetensors_fuzzer.cpp - libFuzzer: the safetensors reader --------===//
//
// Any file: SafetensorsFile::open either fails with a moert::Error (a
// one-line message naming the file) or returns tensors that all lie inside
// the mapping (read here, first and last byte, and converted to f32 when
// they are F32/BF16/F16). Then the same file is loaded as the weights of
// fake_layer_packed (tests/unit/runtime/fake_layer.c: an f32 router and
// bf16 experts packed into panels), which exercises the lookup, the shape
// checks and the conversion and packing code on whatever the header says.
//
//===----------------------------------------------------------------------===//

#include "fuzz_util.h"

#include "runtime/src/convert.h"
#include "runtime/src/error.h"
#include "runtime/src/layer.h"
#include "runtime/src/safetensors.h"

#include <memory>
#include <vector>

using namespace moert;
using moe_fuzz::checkMessage;
using moe_fuzz::MemFile;
using moe_fuzz::violated;

namespace {
void readTensors(const SafetensorsFile &file) {
  std::vector<float> converted;
  volatile unsigned char sink = 0;
  for (const auto &[name, info] : file.tensors()) {
    if (info.end < info.begin ||
        info.end - info.begin != info.numElements() * dtypeSize(info.dtype))
      violated("a tensor's offsets disagree with its shape", name);
    if (info.end == info.begin)
      continue;
    const unsigned char *data = file.data(info);
    sink = sink + data[0] + data[info.end - info.begin - 1];
    FloatFormat from;
    if (info.dtype == DType::F32)
      from = FloatFormat::F32;
    else if (info.dtype == DType::BF16)
      from = FloatFormat::BF16;
    else if (info.dtype == DType::F16)
      from = FloatFormat::F16;
    else
      continue;
    size_t count = std::min<uint64_t>(info.numElements(), 1 << 16);
    converted.resize(count);
    convertFloats(from, data, FloatFormat::F32, converted.data(), count);
  }
}

Layer *fakeLayer() {
  static std::unique_ptr<Layer> layer = Layer::open(MOE_FUZZ_FAKE_LAYER);
  return layer.get();
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  MemFile file(data, size);
  try {
    readTensors(SafetensorsFile::open(file.path()));
  } catch (const Error &e) {
    checkMessage(e.message(), file.path());
  }
  try {
    fakeLayer()->loadWeights(file.path(), "");
  } catch (const Error &e) {
    checkMessage(e.message(), file.path());
  }
  return 0;
}
