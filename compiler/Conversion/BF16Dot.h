//===- BF16Dot.h - How the CPU lowering multiplies bf16 pairs ---*- C++ -*-===//

#ifndef MOE_COMPILER_CONVERSION_BF16DOT_H
#define MOE_COMPILER_CONVERSION_BF16DOT_H

namespace mlir::moe {

/// How convert-moe-to-loops multiplies bf16 activations with pair-packed
/// bf16 weights (weight_k_pack = 2).
enum class BF16Dot {
  /// No bf16 dot products: activations stay f32 in memory (holding bf16
  /// values) and each weight lane is widened.
  none,
  /// AVX-512 BF16: x86vector.avx512.dot (vdpbf16ps) on bf16 activations.
  avx512,
  /// The avx512 data flow (bf16 activations in memory, pairs broadcast)
  /// with each vdpbf16ps written out as its two f32 multiply-adds (odd
  /// input first): checks that data flow on CPUs without the instruction.
  emulate,
};

} // namespace mlir::moe

#endif // MOE_COMPILER_CONVERSION_BF16DOT_H
