//===- blas_baseline.h - The per-expert OpenBLAS baseline -----------------===//
//
// The block as one would write it over a BLAS: the router as one sgemm, the
// family's selection in plain C++, then per expert with tokens: gather its
// tokens, gate = X Wg^T and up = X Wu^T (two sgemm), act(gate) * up, down
// (a third sgemm), scale by the routing weight and scatter-add into the
// output; shared experts as three sgemm over all tokens. OpenBLAS runs each
// product on the chosen thread count. Its best configuration here: weights
// transposed once at load ([in][out], NoTrans x NoTrans sgemm), and products
// of at most 3 rows as one sgemv per row (see linear()). Weights are
// f32 (a bf16 layer's weights are rounded to bf16 and widened once at load,
// so the baseline computes the same function, in f32).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_BENCH_BLAS_BASELINE_H
#define MOE_BENCH_BLAS_BASELINE_H

#include "spec.h"
#include "tensor_io.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace moebench {

class BlasBaseline {
public:
  // bf16Roles: roles whose layer argument is bf16 (rounded at load).
  BlasBaseline(const Spec &spec, const LayerInfo &layer, const SafetensorsFile &file,
               const std::string &prefix, int threads);
  ~BlasBaseline();
  // Sizes the scratch buffers for up to maxTokens tokens.
  void reserve(int64_t maxTokens);
  void forward(const float *x, int64_t tokens, float *y);
  // Distinct experts that got tokens in the last forward.
  int64_t lastExpertsHit() const { return lastHit_; }

private:
  struct Buf;
  void route(const float *x, int64_t tokens);
  void expertFfn(const float *w1, const float *w3, const float *w2, int64_t inter,
                 const float *xIn, int64_t n, float *out);

  Spec spec_;
  int threads_;
  int64_t H_, I_, E_, K_, S_;
  std::unique_ptr<Buf> w_;   // weights
  std::unique_ptr<Buf> ws_;  // scratch
  int64_t lastHit_ = 0;
};

// OpenBLAS's own description (version, core) for the report.
std::string blasConfig();

}  // namespace moebench

#endif
