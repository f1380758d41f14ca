//===- Registration.h - One place to register moec's IR pieces --*- C++ -*-===//

#ifndef MOE_COMPILER_REGISTRATION_REGISTRATION_H
#define MOE_COMPILER_REGISTRATION_REGISTRATION_H

namespace mlir {
class DialectRegistry;
namespace moe {

/// Adds the moe dialect and every upstream dialect and extension moec's
/// pipelines produce or consume.
void registerMoECompilerDialects(DialectRegistry &registry);

/// Registers moec's passes and pipelines, and the upstream passes, with the
/// global pass registry (for moe-opt's command line).
void registerMoECompilerPasses();

} // namespace moe
} // namespace mlir

#endif // MOE_COMPILER_REGISTRATION_REGISTRATION_H
