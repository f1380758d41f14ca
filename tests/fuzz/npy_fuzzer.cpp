//===- npy_fuzzer.cpp - libFuzzer: the .npy reader and writer ------------===//
//
// Any file: readNpyF32 either fails with a moert::Error (one line, naming
// the file) or returns an array whose data matches its shape; that array,
// written with writeNpyF32 and read again, must come back identical. A file
// that promises more data than it holds must fail without allocating the
// promised size (libFuzzer's -malloc_limit_mb catches that).
//
//===----------------------------------------------------------------------===//

#include "fuzz_util.h"

#include "runtime/src/error.h"
#include "runtime/src/npy.h"

#include <cstring>

using namespace moert;
using moe_fuzz::checkMessage;
using moe_fuzz::MemFile;
using moe_fuzz::violated;

namespace {
void roundTrip(const NpyArray &array, size_t rank) {
  uint64_t count = 1;
  for (int64_t d : array.shape)
    count *= uint64_t(d);
  if (array.shape.size() != rank || count != array.data.size())
    violated("an array's data does not match its shape",
             formatShape(array.shape));
  MemFile out(nullptr, 0);
  writeNpyF32(out.path(), array.data.data(), array.shape);
  NpyArray again = readNpyF32(out.path(), rank);
  if (again.shape != array.shape ||
      (count && std::memcmp(again.data.data(), array.data.data(),
                            count * sizeof(float)) != 0))
    violated("write then read changed the array", formatShape(array.shape));
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  MemFile file(data, size);
  for (size_t rank : {size_t(2), size_t(1)}) {
    try {
      roundTrip(readNpyF32(file.path(), rank), rank);
    } catch (const Error &e) {
      checkMessage(e.message(), file.path());
    }
  }
  return 0;
}
