//===- probes.cpp - FMA throughput and read bandwidth probes --------------===//
//
// The probes run on as many threads as the measurement (one probe thread per
// thread), started together behind a spin barrier; the reported rate is the
// total work over the time from the common start to the last thread's end,
// best of several trials (a limit is the best the machine does).
//
//===----------------------------------------------------------------------===//

#include "probes.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace moebench {

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

volatile float gSink;  // keeps the probes' results alive

// --- FMA kernels: many independent accumulators, so that throughput, not
// latency, bounds them (latency 4-5 cycles x 2 FMA ports needs >= 10 chains).

__attribute__((target("avx2,fma"), noinline)) double fmaAvx2(int64_t iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(0.5f + 0.01f * float(i));
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma unroll
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
  }
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  gSink = out[0];
  return double(iters) * 12 * 8 * 2;
}

__attribute__((target("avx512f"), noinline)) double fmaAvx512(int64_t iters) {
  __m512 a[24];
  for (int i = 0; i < 24; ++i) a[i] = _mm512_set1_ps(0.5f + 0.01f * float(i));
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma unroll
    for (int i = 0; i < 24; ++i) a[i] = _mm512_fmadd_ps(a[i], b, c);
  }
  __m512 s = a[0];
  for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, a[i]);
  gSink = _mm512_reduce_add_ps(s);
  return double(iters) * 24 * 16 * 2;
}

double fmaScalar(int64_t iters) {
  float a[8];
  for (int i = 0; i < 8; ++i) a[i] = 0.5f + 0.01f * float(i);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 8; ++i) a[i] = a[i] * 0.999999f + 1e-6f;
  gSink = a[0] + a[7];
  return double(iters) * 8 * 2;
}

// Runs body(thread) on `threads` threads started together; returns the
// wall time from the common start to the last end.
template <typename F>
double runTogether(int threads, F body) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<Clock::time_point> ends(static_cast<size_t>(threads));
  auto worker = [&](int t) {
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) {
    }
    body(t);
    ends[size_t(t)] = Clock::now();
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  while (ready.load() < threads - 1) std::this_thread::yield();
  Clock::time_point start = Clock::now();
  go.store(true, std::memory_order_release);
  worker(0);
  for (auto &th : pool) th.join();
  return seconds(start, *std::max_element(ends.begin(), ends.end()));
}

// --- read bandwidth ---

// Sums `streams` equal parts of p[0, n) read side by side (a kernel reading a
// weight panel and its neighbours keeps several streams in flight: one core
// gets more bandwidth from 2-4 streams than from one). The parts start a
// little over 12 KiB off a power-of-two distance from each other: streams at
// power-of-two distances fall into the same DRAM banks and lose ~20%.
constexpr size_t kStreamSkew = 3120;  // floats

__attribute__((target("avx2"), noinline)) float sumAvx2(const float *p, size_t n, int streams) {
  __m256 s[8];
  for (auto &v : s) v = _mm256_setzero_ps();
  size_t skew = streams > 1 ? kStreamSkew : 0;
  size_t per = (n - size_t(streams - 1) * skew) / size_t(streams) / 32 * 32, stride = per + skew;
  for (size_t i = 0; i < per; i += 32)
    for (int k = 0; k < streams; ++k) {
      const float *q = p + size_t(k) * stride + i;
      int a = (k & 1) * 4;
      s[a + 0] = _mm256_add_ps(s[a + 0], _mm256_load_ps(q));
      s[a + 1] = _mm256_add_ps(s[a + 1], _mm256_load_ps(q + 8));
      s[a + 2] = _mm256_add_ps(s[a + 2], _mm256_load_ps(q + 16));
      s[a + 3] = _mm256_add_ps(s[a + 3], _mm256_load_ps(q + 24));
    }
  for (int j = 1; j < 8; ++j) s[0] = _mm256_add_ps(s[0], s[j]);
  float out[8];
  _mm256_storeu_ps(out, s[0]);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

float sumScalar(const float *p, size_t n, int streams) {
  float s[8] = {};
  size_t skew = streams > 1 ? kStreamSkew : 0;
  size_t per = (n - size_t(streams - 1) * skew) / size_t(streams) / 8 * 8, stride = per + skew;
  for (size_t i = 0; i < per; i += 8)
    for (int k = 0; k < streams; ++k)
      for (int j = 0; j < 8; ++j) s[j] += p[size_t(k) * stride + i + size_t(j)];
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

// Bytes sumBuffer(p, n, streams) reads.
size_t bytesRead(size_t n, int streams) {
  size_t skew = streams > 1 ? kStreamSkew : 0;
  size_t round = __builtin_cpu_supports("avx2") ? 32 : 8;
  return (n - size_t(streams - 1) * skew) / size_t(streams) / round * round * size_t(streams) * 4;
}

float sumBuffer(const float *p, size_t n, int streams = 1) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2 ? sumAvx2(p, n, streams) : sumScalar(p, n, streams);
}

struct Buffer {
  float *data = nullptr;
  size_t bytes = 0;
  explicit Buffer(size_t n) : bytes(n) {
    const size_t huge = size_t(2) << 20;
    data = static_cast<float *>(std::aligned_alloc(huge, (n + huge - 1) / huge * huge));
    if (!data) throw std::bad_alloc();
    madvise(data, n, MADV_HUGEPAGE);
  }
  ~Buffer() { std::free(data); }
};

}  // namespace

FmaProbe probeFma(int threads) {
  __builtin_cpu_init();
  FmaProbe r;
  double (*kernel)(int64_t) = fmaScalar;
  r.isa = "scalar";
  if (__builtin_cpu_supports("avx512f")) {
    kernel = fmaAvx512;
    r.isa = "avx512f";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    kernel = fmaAvx2;
    r.isa = "avx2+fma";
  }
  // Calibrate: about 0.1 s per thread per trial.
  int64_t iters = 1 << 16;
  for (;;) {
    Clock::time_point a = Clock::now();
    kernel(iters);
    double s = seconds(a, Clock::now());
    if (s > 0.02) {
      iters = int64_t(double(iters) * 0.1 / s) + 1;
      break;
    }
    iters *= 4;
  }
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<double> flops(static_cast<size_t>(threads));
    double s = runTogether(threads, [&](int t) { flops[size_t(t)] = kernel(iters); });
    double total = 0;
    for (double f : flops) total += f;
    r.gflops = std::max(r.gflops, total / s * 1e-9);
  }
  return r;
}

ReadProbe probeReadBandwidth(int threads) {
  ReadProbe r;
  size_t bytes = std::min<size_t>(std::max<size_t>(16 * llcBytes(), size_t(256) << 20),
                                  size_t(1) << 30);
  bytes -= bytes % (size_t(threads) * 4096);
  r.bufferBytes = bytes;
  Buffer buf(bytes);
  size_t n = bytes / 4, slice = n / size_t(threads);
  // Each thread first touches the slice it reads (pages land near it).
  runTogether(threads, [&](int t) {
    float *p = buf.data + size_t(t) * slice;
    for (size_t i = 0; i < slice; ++i) p[i] = float(i & 1023) * 1e-3f;
  });
  std::vector<float> sums(static_cast<size_t>(threads));
  for (int streams : {1, 2, 4, 8}) {
    for (int pass = 0; pass < 8; ++pass) {
      double s = runTogether(threads, [&](int t) {
        sums[size_t(t)] = sumBuffer(buf.data + size_t(t) * slice, slice, streams);
      });
      double gbps = double(bytesRead(slice, streams)) * threads / s * 1e-9;
      if (pass > 0 && gbps > r.gbps) {
        r.gbps = gbps;
        r.streams = streams;
      }
    }
  }
  gSink = sums[0];
  return r;
}

size_t llcBytes() {
  // The kernel's view first: what one core shares (glibc's cpuid-based
  // sysconf may report the whole package, e.g. 256 MiB for 8 CCDs of 32).
  static size_t cached = [] {
    int bestLevel = 0;
    size_t best = 0;
    for (int idx = 0; idx < 10; ++idx) {
      std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(idx);
      std::ifstream lf(dir + "/level"), sf(dir + "/size");
      int level = 0;
      std::string s;
      if (!(lf >> level) || !(sf >> s) || s.empty()) continue;
      size_t n = std::strtoull(s.c_str(), nullptr, 10);
      if (s.back() == 'K') n <<= 10;
      if (s.back() == 'M') n <<= 20;
      if (level > bestLevel && n > 0) {
        bestLevel = level;
        best = n;
      }
    }
    if (bestLevel >= 2) return best;
    long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (v > 0) return size_t(v);
    return size_t(32) << 20;
  }();
  return cached;
}

std::string cpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        size_t b = line.find_first_not_of(" \t", colon + 1);
        return b == std::string::npos ? "" : line.substr(b);
      }
    }
  return "unknown";
}

void evictCaches() {
  static std::unique_ptr<Buffer> buf;
  if (!buf) {
    buf = std::make_unique<Buffer>(4 * llcBytes());
    std::memset(buf->data, 0, buf->bytes);
  }
  gSink = sumBuffer(buf->data, buf->bytes / 4);
}

}  // namespace moebench
