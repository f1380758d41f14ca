//===- probes.h - The machine's limits, measured by moe-bench itself -----===//

#ifndef MOE_BENCH_PROBES_H
#define MOE_BENCH_PROBES_H

#include <cstddef>
#include <string>

namespace moebench {

struct FmaProbe {
  double gflops = 0;   // best of the trials, all threads together
  std::string isa;     // "avx512f" | "avx2+fma" | "scalar"
};

struct ReadProbe {
  double gbps = 0;     // best pass, all threads together (1 GB = 1e9 bytes)
  size_t bufferBytes = 0;
  int streams = 1;     // concurrent read streams per thread of the best pass
};

// FMA throughput on `threads` threads: each runs a loop of independent
// vector FMA chains (AVX-512 when the CPU has it, else AVX2+FMA).
FmaProbe probeFma(int threads);
// Read bandwidth: `threads` threads each stream their slice of one buffer of
// max(16 x LLC, 256 MiB) (at most 1 GiB), summing it with vector loads as
// 1, 2, 4 or 8 concurrent streams; the best pass counts.
ReadProbe probeReadBandwidth(int threads);

size_t llcBytes();         // last-level cache size (32 MiB if unknown)
std::string cpuModel();    // /proc/cpuinfo's "model name"

// Reads a buffer of 4 x LLC so that the next timed run finds no weights in
// the caches. Not thread-safe; call between runs.
void evictCaches();

}  // namespace moebench

#endif
