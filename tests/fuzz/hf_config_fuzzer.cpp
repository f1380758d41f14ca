//===- hf_config_fuzzer.cpp - libFuzzer: the Hugging Face config frontend -===//
//
// Any text: parseHFConfig either returns an error (one line) or a LayerSpec
// whose moe.layer module, as moec builds it, passes the verifier. The
// frontend checks the verifier's rules in the config's own terms, so a spec
// the verifier rejects is a frontend bug (a user would get an IR error
// instead of one naming the key).
//
//===----------------------------------------------------------------------===//

#include "fuzz_util.h"

#include "compiler/Frontend/HFConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"

#include <string>

using namespace mlir;
using moe_fuzz::violated;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  StringRef text(reinterpret_cast<const char *>(data), size);
  llvm::Expected<moe::LayerSpec> spec = moe::parseHFConfig(text);
  if (!spec) {
    moe_fuzz::checkOneLine(llvm::toString(spec.takeError()));
    return 0;
  }

  MLIRContext context(MLIRContext::Threading::DISABLED);
  std::string diagnostics;
  ScopedDiagnosticHandler collect(&context, [&](Diagnostic &d) {
    diagnostics += d.str() + "\n";
    return success();
  });
  // As `moec compile --weight-dtype f32` and `bf16` build it.
  for (auto weights : {moe::LayerSpec::WeightType::f32,
                       moe::LayerSpec::WeightType::bf16}) {
    spec->ffnWeights = weights;
    OwningOpRef<ModuleOp> module =
        moe::buildLayerModule(&context, *spec, UnknownLoc::get(&context));
    if (!module)
      violated("buildLayerModule returned no module", text);
    if (failed(verify(*module)))
      violated("a config the frontend accepted fails verification",
               diagnostics);
  }
  return 0;
}
