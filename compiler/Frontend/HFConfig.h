//===- HFConfig.h - Hugging Face config.json frontend -----------*- C++ -*-===//

#ifndef MOE_COMPILER_FRONTEND_HFCONFIG_H
#define MOE_COMPILER_FRONTEND_HFCONFIG_H

#include "compiler/Frontend/LayerSpec.h"

#include "llvm/Support/Error.h"

namespace mlir::moe {

/// The families moec understands (design.md §2), in `model_type` spelling.
ArrayRef<StringRef> supportedFamilies();

/// Reads an MoE block from the text of a Hugging Face `config.json`. Errors
/// name the key and the family: "mixtral config: missing key
/// 'num_local_experts'".
llvm::Expected<LayerSpec> parseHFConfig(StringRef json);

} // namespace mlir::moe

#endif // MOE_COMPILER_FRONTEND_HFCONFIG_H
