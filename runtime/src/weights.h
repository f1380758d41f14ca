//===- weights.h - Packing weights into the panel layout -------*- C++ -*-===//
//
// The conversion behind Layer::loadWeights (weights.cpp), exposed for tests.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_WEIGHTS_H
#define MOERT_SRC_WEIGHTS_H

#include "runtime/src/convert.h"

#include <cstdint>
#include <vector>

namespace moert {

/// Converts a dense tensor of `shape` [lead..., out, in] from `from` at `src`
/// into panels of `panel` outputs with `kPack` consecutive inputs per lane
/// (docs/abi.md, "layout: panels"), in `to` at `dst`: [lead...,
/// ceil(out / P), ceil(in / K), P * K] (panelShape) with
/// packed[o / P][i / K][(o % P) * K + i % K] = W[o][i] and zeros for
/// o >= out or i >= in. `dst` is aligned for `to`; `to` is f32 or bf16/f16.
void packPanels(FloatFormat from, const void *src, FloatFormat to, void *dst,
                const std::vector<int64_t> &shape, int64_t panel,
                int64_t kPack);

} // namespace moert

#endif // MOERT_SRC_WEIGHTS_H
