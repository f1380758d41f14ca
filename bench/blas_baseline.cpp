//===- blas_baseline.cpp - The per-expert OpenBLAS baseline ---------------===//

#include "blas_baseline.h"

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>

namespace moebench {

struct BlasBaseline::Buf {
  std::vector<float> router, bias, gate, up, down, sgate, sup, sdown, segate;
  // scratch
  std::vector<float> logits, scores, select, wts, xe, g, u, d, sg;
  std::vector<int32_t> idx, slotToken;
  std::vector<float> slotWeight;
  std::vector<int64_t> counts, offsets;
};

namespace {

// Rows up to which a linear goes through one sgemv per row: sgemm's packing
// of the weight costs about as much as 2-3 passes over it when a handful of
// rows share it (measured with OpenBLAS 0.3.21, docs/bench.md).
constexpr int64_t kGemvRows = 3;

// y[n x m] = a[n x k] . W^T, with W^T stored [k][m] (the weights are
// transposed once at load: OpenBLAS runs NoTrans x NoTrans faster than
// NoTrans x Trans for the few-row products of small token counts).
void linear(const float *a, int64_t n, int64_t k, const float *wt, int64_t m, float *y) {
  if (n <= kGemvRows) {
    for (int64_t r = 0; r < n; ++r)
      cblas_sgemv(CblasRowMajor, CblasTrans, blasint(k), blasint(m), 1.0f, wt, blasint(m),
                  a + r * k, 1, 0.0f, y + r * m, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(n), blasint(m), blasint(k),
                1.0f, a, blasint(k), wt, blasint(m), 0.0f, y, blasint(m));
  }
}

// dst[c][r] = src[r][c] for src [rows][cols].
void transpose(const float *src, int64_t rows, int64_t cols, float *dst) {
  constexpr int64_t B = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += B)
    for (int64_t c0 = 0; c0 < cols; c0 += B)
      for (int64_t r = r0; r < std::min(rows, r0 + B); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + B); ++c) dst[c * rows + r] = src[r * cols + c];
}

// fn(begin, end) over [0, n) on up to `threads` threads, for work worth it.
template <typename F>
void parallelFor(int64_t n, int64_t costPerItem, int threads, F fn) {
  if (threads <= 1 || n < 2 || n * costPerItem < (int64_t(1) << 16)) {
    fn(int64_t(0), n);
    return;
  }
  int t = int(std::min<int64_t>(threads, n));
  std::vector<std::thread> pool;
  int64_t per = (n + t - 1) / t;
  for (int i = 1; i < t; ++i) {
    int64_t b = i * per, e = std::min(n, b + per);
    if (b < e) pool.emplace_back(fn, b, e);
  }
  fn(int64_t(0), std::min(n, per));
  for (auto &th : pool) th.join();
}

float activate(const std::string &act, float v) {
  if (act == "relu") return v > 0 ? v : 0.0f;
  if (act == "gelu") return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
  if (act == "gelu_new" || act == "gelu_pytorch_tanh")
    return 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
  return v / (1.0f + std::exp(-v));  // silu / swish
}

// h[i] = act(g[i]) * u[i] (gated) or act(u[i]), specialised per activation.
template <typename Act>
void applyAct(float *g, const float *u, int64_t n, Act act) {
  if (u)
    for (int64_t i = 0; i < n; ++i) g[i] = act(g[i]) * u[i];
  else
    for (int64_t i = 0; i < n; ++i) g[i] = act(g[i]);
}

void activation(const std::string &act, float *g, const float *u, int64_t n) {
  if (act == "silu" || act == "swish")
    applyAct(g, u, n, [](float v) { return v / (1.0f + std::exp(-v)); });
  else if (act == "relu")
    applyAct(g, u, n, [](float v) { return v > 0 ? v : 0.0f; });
  else
    applyAct(g, u, n, [&](float v) { return activate(act, v); });
}

// Descending order, ties to the lower index, NaN never greater: the first k.
void topK(const float *v, int64_t n, int64_t k, int32_t *out, std::vector<char> &taken) {
  taken.assign(size_t(n), 0);
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t e = 0; e < n; ++e) {
      if (taken[size_t(e)]) continue;
      if (best < 0 || v[e] > v[best]) best = e;
    }
    taken[size_t(best)] = 1;
    out[j] = int32_t(best);
  }
}

}  // namespace

BlasBaseline::BlasBaseline(const Spec &spec, const LayerInfo &layer, const SafetensorsFile &file,
                           const std::string &prefix, int threads)
    : spec_(spec), threads_(threads), H_(spec.hidden), I_(spec.inter), E_(spec.experts),
      K_(spec.topK), S_(spec.sharedInter), w_(std::make_unique<Buf>()), ws_(std::make_unique<Buf>()) {
  openblas_set_num_threads(threads);
  auto argDtype = [&](const std::string &name) {
    for (const WeightArg &w : layer.weights)
      if (w.name == name) return w.dtype;
    throw Error(fmt::format("the layer has no weight '{}'", name));
  };
  // Reads role's tensor(s) into dst, checking shapes; rounds to bf16 where
  // the layer stores bf16.
  auto load = [&](const std::string &role, std::vector<float> &dst, std::vector<int64_t> shape) {
    auto it = spec_.names.find(role);
    if (it == spec_.names.end()) return;
    const std::string &name = it->second;
    bool stacked = name.find("{e}") != std::string::npos;
    bool round = argDtype(name) == "bf16";
    int64_t per = 1;
    for (int64_t s : shape) per *= s;
    int64_t count = stacked ? E_ : 1;
    dst.assign(size_t(per * count), 0.0f);
    std::vector<float> tmp(static_cast<size_t>(per));
    for (int64_t e = 0; e < count; ++e) {
      std::string full = prefix + name;
      if (stacked) full.replace(full.find("{e}"), 3, std::to_string(e));
      if (file.shape(full) != shape)
        throw Error(fmt::format("{}: tensor '{}' has shape [{}], expected [{}]", file.path(), full,
                                fmt::join(file.shape(full), ", "), fmt::join(shape, ", ")));
      if (shape.size() == 2) {  // a Linear weight [out][in]: stored transposed
        file.readF32(full, tmp.data(), round);
        transpose(tmp.data(), shape[0], shape[1], dst.data() + e * per);
      } else {
        file.readF32(full, dst.data() + e * per, round);
      }
    }
  };
  load("router", w_->router, {E_, H_});
  load("bias", w_->bias, {E_});
  load("gate", w_->gate, {I_, H_});
  load("up", w_->up, {I_, H_});
  load("down", w_->down, {H_, I_});
  load("shared_gate", w_->sgate, {S_, H_});
  load("shared_up", w_->sup, {S_, H_});
  load("shared_down", w_->sdown, {H_, S_});
  load("shared_expert_gate", w_->segate, {1, H_});
}

BlasBaseline::~BlasBaseline() = default;

void BlasBaseline::reserve(int64_t T) {
  Buf &b = *ws_;
  int64_t width = std::max(I_, S_);
  b.logits.resize(size_t(T * E_));
  b.select.resize(size_t(E_));
  b.wts.resize(size_t(T * K_));
  b.idx.resize(size_t(T * K_));
  b.slotToken.resize(size_t(T * K_));
  b.slotWeight.resize(size_t(T * K_));
  b.xe.resize(size_t(T * H_));
  b.g.resize(size_t(T * width));
  b.u.resize(size_t(T * width));
  b.d.resize(size_t(T * H_));
  b.sg.resize(size_t(T));
  b.counts.resize(size_t(E_));
  b.offsets.resize(size_t(E_ + 1));
}

void BlasBaseline::route(const float *x, int64_t T) {
  Buf &b = *ws_;
  linear(x, T, H_, w_->router.data(), E_, b.logits.data());
  std::vector<char> taken;
  std::vector<float> groupScores(size_t(spec_.nGroup));
  std::vector<int32_t> keptGroups(size_t(spec_.topkGroup));
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < T; ++t) {
    float *s = b.logits.data() + t * E_;  // scores in place
    if (spec_.scoring == "softmax") {
      float m = s[0];
      for (int64_t e = 1; e < E_; ++e) m = std::max(m, s[e]);
      float sum = 0;
      for (int64_t e = 0; e < E_; ++e) sum += (s[e] = std::exp(s[e] - m));
      for (int64_t e = 0; e < E_; ++e) s[e] /= sum;
    } else {
      for (int64_t e = 0; e < E_; ++e) s[e] = 1.0f / (1.0f + std::exp(-s[e]));
    }
    float *sel = b.select.data();
    for (int64_t e = 0; e < E_; ++e) sel[e] = s[e] + (w_->bias.empty() ? 0.0f : w_->bias[size_t(e)]);
    if (!spec_.groupScore.empty() && spec_.nGroup > 1) {
      int64_t per = E_ / spec_.nGroup;
      for (int64_t g = 0; g < spec_.nGroup; ++g) {
        const float *v = sel + g * per;
        if (spec_.groupScore == "max") {
          float m = v[0];
          for (int64_t i = 1; i < per; ++i) m = std::max(m, v[i]);
          groupScores[size_t(g)] = m;
        } else {  // sum of the two best
          int32_t two[2];
          topK(v, per, 2, two, taken);
          groupScores[size_t(g)] = v[two[0]] + v[two[1]];
        }
      }
      topK(groupScores.data(), spec_.nGroup, spec_.topkGroup, keptGroups.data(), taken);
      std::vector<char> keep(size_t(spec_.nGroup), 0);
      for (int32_t g : keptGroups) keep[size_t(g)] = 1;
      for (int64_t e = 0; e < E_; ++e)
        if (!keep[size_t(e / per)]) sel[e] = ninf;
    }
    int32_t *idx = b.idx.data() + t * K_;
    float *w = b.wts.data() + t * K_;
    topK(sel, E_, K_, idx, taken);
    float sum = 0;
    for (int64_t j = 0; j < K_; ++j) sum += (w[j] = s[idx[j]]);
    for (int64_t j = 0; j < K_; ++j) {
      if (spec_.renormalize) w[j] = float(double(w[j]) / (double(sum) + spec_.renormEps));
      w[j] = float(double(w[j]) * spec_.scaling);
    }
  }
  if (spec_.capacity > 0) {  // each expert keeps its first `capacity` slots, in token order
    std::vector<int64_t> used(size_t(E_), 0);
    for (int64_t i = 0; i < T * K_; ++i)
      if (++used[size_t(b.idx[size_t(i)])] > spec_.capacity) b.idx[size_t(i)] = -1;
  }
}

void BlasBaseline::expertFfn(const float *w1, const float *w3, const float *w2, int64_t inter,
                             const float *xIn, int64_t n, float *out) {
  Buf &b = *ws_;
  float *g = b.g.data(), *u = b.u.data();
  if (w1) {
    linear(xIn, n, H_, w1, inter, g);
    linear(xIn, n, H_, w3, inter, u);
    parallelFor(n, inter * 16, threads_, [&](int64_t r0, int64_t r1) {
      activation(spec_.act, g + r0 * inter, u + r0 * inter, (r1 - r0) * inter);
    });
  } else {
    linear(xIn, n, H_, w3, inter, g);
    parallelFor(n, inter * 16, threads_, [&](int64_t r0, int64_t r1) {
      activation(spec_.act, g + r0 * inter, nullptr, (r1 - r0) * inter);
    });
  }
  linear(g, n, inter, w2, H_, out);
}

void BlasBaseline::forward(const float *x, int64_t T, float *y) {
  Buf &b = *ws_;
  if (T <= 0) return;
  if (int64_t(b.sg.size()) < T) reserve(T);
  route(x, T);
  // Counting sort of the slots by expert (token order within an expert).
  std::fill(b.counts.begin(), b.counts.end(), 0);
  for (int64_t i = 0; i < T * K_; ++i)
    if (b.idx[size_t(i)] >= 0) ++b.counts[size_t(b.idx[size_t(i)])];
  b.offsets[0] = 0;
  lastHit_ = 0;
  for (int64_t e = 0; e < E_; ++e) {
    b.offsets[size_t(e + 1)] = b.offsets[size_t(e)] + b.counts[size_t(e)];
    lastHit_ += b.counts[size_t(e)] > 0;
  }
  std::vector<int64_t> fill(b.offsets.begin(), b.offsets.end() - 1);
  for (int64_t i = 0; i < T * K_; ++i) {
    int32_t e = b.idx[size_t(i)];
    if (e < 0) continue;
    int64_t at = fill[size_t(e)]++;
    b.slotToken[size_t(at)] = int32_t(i / K_);
    b.slotWeight[size_t(at)] = b.wts[size_t(i)];
  }
  std::fill(y, y + T * H_, 0.0f);
  const bool gated = spec_.gated();
  for (int64_t e = 0; e < E_; ++e) {
    int64_t n = b.counts[size_t(e)], first = b.offsets[size_t(e)];
    if (n == 0) continue;
    for (int64_t r = 0; r < n; ++r)  // gather
      std::copy_n(x + int64_t(b.slotToken[size_t(first + r)]) * H_, H_, b.xe.data() + r * H_);
    const int64_t wsz = I_ * H_;
    expertFfn(gated ? w_->gate.data() + e * wsz : nullptr, w_->up.data() + e * wsz,
              w_->down.data() + e * wsz, I_, b.xe.data(), n, b.d.data());
    for (int64_t r = 0; r < n; ++r) {  // scale and scatter-add
      float w = b.slotWeight[size_t(first + r)];
      float *dst = y + int64_t(b.slotToken[size_t(first + r)]) * H_;
      const float *src = b.d.data() + r * H_;
      for (int64_t h = 0; h < H_; ++h) dst[h] += w * src[h];
    }
  }
  if (S_ > 0) {
    expertFfn(w_->sgate.data(), w_->sup.data(), w_->sdown.data(), S_, x, T, b.d.data());
    if (!w_->segate.empty()) {
      linear(x, T, H_, w_->segate.data(), 1, b.sg.data());
      for (int64_t t = 0; t < T; ++t) b.sg[size_t(t)] = 1.0f / (1.0f + std::exp(-b.sg[size_t(t)]));
    }
    for (int64_t t = 0; t < T; ++t) {
      float s = w_->segate.empty() ? 1.0f : b.sg[size_t(t)];
      for (int64_t h = 0; h < H_; ++h) y[t * H_ + h] += s * b.d[size_t(t * H_ + h)];
    }
  }
}

std::string blasConfig() {
  return fmt::format("{} ({})", openblas_get_config(), openblas_get_corename());
}

}  // namespace moebench
