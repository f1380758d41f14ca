//===- layer_metadata_fuzzer.cpp - libFuzzer: the layer metadata parser --===//
//
// The JSON a LAYER.so embeds (docs/abi.md) is read by parseLayerMetadata
// before anything else of the library is trusted. Any text: a moert::Error
// (one line, naming the library) or metadata the runtime can build memref
// descriptors from (every weight's storage shape matches its layout).
//
//===----------------------------------------------------------------------===//

#include "fuzz_util.h"

#include "runtime/src/error.h"
#include "runtime/src/metadata.h"

using namespace moert;
using moe_fuzz::checkMessage;
using moe_fuzz::violated;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view text(reinterpret_cast<const char *>(data), size);
  try {
    LayerMetadata m = parseLayerMetadata(text, "layer.so");
    for (const ArgumentSpec &a : m.arguments) {
      if (a.storageShape.size() > kMaxRank)
        violated("an argument's rank exceeds kMaxRank", a.name);
      if (a.panel && a.storageShape != panelShape(a.shape, a.panel))
        violated("a panel argument's storage shape is not its panels",
                 a.name);
    }
  } catch (const Error &e) {
    checkMessage(e.message(), "layer.so");
  }
  return 0;
}
