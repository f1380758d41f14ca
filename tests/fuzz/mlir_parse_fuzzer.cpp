//===- mlir_parse_fuzzer.cpp - libFuzzer: .mlir parsing and verification -===//
//
// Any text, parsed as a module with the moe, func and tensor dialects
// registered (as moe-opt and `moec compile x.mlir` do) and verified: errors
// are diagnostics, never a crash. A module that parses and verifies must
// print to text that parses and verifies again (the moe ops' custom
// assembly formats round-trip).
//
//===----------------------------------------------------------------------===//

#include "fuzz_util.h"

#include "dialect/MoE/IR/MoEDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"

#include "llvm/Support/raw_ostream.h"

#include <string>

using namespace mlir;
using moe_fuzz::violated;

namespace {
const DialectRegistry &registry() {
  static DialectRegistry *r = [] {
    auto *r = new DialectRegistry();
    r->insert<moe::MoEDialect, func::FuncDialect, tensor::TensorDialect>();
    return r;
  }();
  return *r;
}

OwningOpRef<ModuleOp> parse(StringRef text, MLIRContext &context) {
  ParserConfig config(&context, /*verifyAfterParse=*/true);
  return parseSourceString<ModuleOp>(text, config);
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // moe-opt and moec read files into NUL-terminated buffers, and MLIR's
  // lexer relies on that terminator (given the fuzzer's bytes as they are,
  // it reads past them: Token::getSymbolReference on "func.func @cf").
  std::string source(reinterpret_cast<const char *>(data), size);
  StringRef text(source.c_str(), size);
  MLIRContext context(registry(), MLIRContext::Threading::DISABLED);
  std::string diagnostics;
  ScopedDiagnosticHandler collect(&context, [&](Diagnostic &d) {
    diagnostics += d.str() + "\n";
    return success();
  });
  OwningOpRef<ModuleOp> module = parse(text, context);
  if (!module)
    return 0;

  std::string printed;
  llvm::raw_string_ostream os(printed);
  module->print(os);
  os.flush();
  diagnostics.clear();
  MLIRContext again(registry(), MLIRContext::Threading::DISABLED);
  ScopedDiagnosticHandler collectAgain(&again, [&](Diagnostic &d) {
    diagnostics += d.str() + "\n";
    return success();
  });
  if (!parse(printed, again))
    violated("a verified module does not parse again once printed",
             printed + "\n" + diagnostics);
  return 0;
}
