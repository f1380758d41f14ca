//===- PopulatePatterns.h - convert-moe-to-loops, by op family --*- C++ -*-===//

#ifndef MOE_COMPILER_CONVERSION_MOETOLOOPS_POPULATEPATTERNS_H
#define MOE_COMPILER_CONVERSION_MOETOLOOPS_POPULATEPATTERNS_H

#include "compiler/Conversion/MoEToLoops/DotKernel.h"
#include "dialect/MoE/IR/MoEOps.h"

namespace mlir {
class RewritePatternSet;
namespace moe {
class LoopEmitter;

/// moe.router, moe.topk, moe.stats, moe.aux_loss.
void populateRoutingToLoopsPatterns(RewritePatternSet &patterns,
                                    const DotSchedule &schedule);
/// moe.dispatch.
void populateDispatchToLoopsPatterns(RewritePatternSet &patterns);
/// moe.expert_ffn, moe.shared_expert.
void populateExpertFFNToLoopsPatterns(RewritePatternSet &patterns,
                                      const DotSchedule &schedule);
/// moe.combine.
void populateCombineToLoopsPatterns(RewritePatternSet &patterns);

/// The op's `#moe.cpu_schedule` when it has one, else `fallback` (the
/// pass options).
inline DotSchedule scheduleFor(CPUScheduleAttr attr,
                               const DotSchedule &fallback) {
  if (!attr)
    return fallback;
  return {attr.getVectorWidth(), attr.getRowBlock(), attr.getColBlock(),
          attr.getStreamingRows(), attr.getPairRowBlock(), fallback.bf16Dot};
}

/// The sizes for the dynamic dimensions of `type`, whose leading dimension
/// (when dynamic) is `leading`.
SmallVector<Value> leadingDynamicSize(RankedTensorType type, Value leading);

} // namespace moe
} // namespace mlir

#endif // MOE_COMPILER_CONVERSION_MOETOLOOPS_POPULATEPATTERNS_H
