#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) in the sanitizer build (scripts/sanitize.sh --build-only:
# build-sanitize/, the whole tree instrumented with ASan, UBSan and libFuzzer's coverage), and runs
# each for SECONDS (default 60) from its seed corpus (tests/fuzz/corpus/<target>). Exits non-zero
# if any target crashes, leaks, times out or breaks a contract; prints a summary either way.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]      TARGET: hf-config mlir-parse safetensors npy
#                                                           layer-metadata (default: all)
# Environment: MOE_ASAN_BUILD (build dir, default build-sanitize), MOE_FUZZ_JOBS (targets run at
# once, default 1), MOE_FUZZ_ARGS (extra libFuzzer flags), MOE_FUZZ_RUNS (instead of SECONDS:
# exactly this many inputs per target from seed MOE_FUZZ_SEED, default 1, and from the seed
# corpus only: a reproducible run, what the test suite uses so that CI never fails by chance;
# time-bounded runs explore further and keep their finds).
# Inputs found so far stay in build-sanitize/fuzz/<target>/corpus (later runs start from them);
# a crash leaves build-sanitize/fuzz/<target>/crash-* (reproduce: build-sanitize/bin/moe-fuzz-<target>
# FILE) and the log build-sanitize/fuzz/<target>/log.
# Needs the Debian packages clang-22 and libclang-rt-22-dev (fuzzer and sanitizer runtimes).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(hf-config mlir-parse safetensors npy layer-metadata)
build=${MOE_ASAN_BUILD:-"$src/build-sanitize"}
jobs=${MOE_FUZZ_JOBS:-1}
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a number, not '$seconds'" >&2; exit 2;; esac

rt=$(/usr/lib/llvm-22/bin/clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)
if [ ! -f "$rt" ] && [ ! -f /usr/lib/llvm-22/lib/clang/22/lib/linux/libclang_rt.fuzzer-x86_64.a ]; then
  echo "fuzz.sh: libFuzzer's runtime is missing: apt-get install libclang-rt-22-dev" >&2
  exit 2
fi

start=$(date +%s)
MOE_ASAN_BUILD="$build" bash "$src/scripts/sanitize.sh" --build-only >/dev/null
built=$(date +%s)
if [ -n "${MOE_FUZZ_RUNS:-}" ]; then
  echo "fuzz.sh: built in $((built - start)) s; ${MOE_FUZZ_RUNS} inputs per target from seed ${MOE_FUZZ_SEED:-1}"
else
  echo "fuzz.sh: built in $((built - start)) s; fuzzing each target for ${seconds} s"
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-/usr/lib/llvm-22/bin/llvm-symbolizer}

# 0 seconds: run the seed corpus (and the inputs found earlier) once, no fuzzing.
if [ -n "${MOE_FUZZ_RUNS:-}" ]; then
  limit=(-runs="$MOE_FUZZ_RUNS" -seed="${MOE_FUZZ_SEED:-1}")
elif [ "$seconds" -eq 0 ]; then limit=(-runs=0); else limit=(-max_total_time="$seconds"); fi

run_one() {
  local t=$1 out="$build/fuzz/$1" status=0
  # A reproducible run starts from the seed corpus alone.
  [ -n "${MOE_FUZZ_RUNS:-}" ] && rm -rf "$out/corpus"
  mkdir -p "$out/corpus"
  local dict=()
  [ -f "$src/tests/fuzz/dicts/$t.dict" ] && dict=(-dict="$src/tests/fuzz/dicts/$t.dict")
  # -timeout: one input taking this long is a finding (a hang); -rss_limit_mb also caps any
  # single allocation (malloc_limit_mb defaults to it): reading a small file must not need GBs.
  # shellcheck disable=SC2086
  "$build/bin/moe-fuzz-$t" "$out/corpus" "$src/tests/fuzz/corpus/$t" "${dict[@]}" \
    "${limit[@]}" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/" ${MOE_FUZZ_ARGS:-} >"$out/log" 2>&1 || status=$?
  echo "$status" >"$out/status"
}

set +e
running=0
for t in "${targets[@]}"; do
  rm -f "$build/fuzz/$t/status"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait

failed=0
printf '%-16s %-8s %12s %8s %8s  %s\n' target result executions cov corpus artifact
for t in "${targets[@]}"; do
  out="$build/fuzz/$t"
  status=$(cat "$out/status" 2>/dev/null || echo 255)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$out/log" | tail -1 | cut -d' ' -f2)
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out/log" | tail -1)
  files=$(find "$out/corpus" -type f | wc -l)
  result=ok
  if [ "$status" != 0 ]; then result=FAILED; failed=$((failed + 1)); fi
  printf '%-16s %-8s %12s %8s %8s  %s\n' "$t" "$result" "${execs:-?}" "${cov:-?}" "$files" "${artifact:-}"
  if [ "$status" != 0 ]; then
    grep -m1 -E '^(==[0-9]+==ERROR|SUMMARY|moe-fuzz: contract|.*runtime error:|==[0-9]+== ERROR: libFuzzer)' "$out/log" | sed 's/^/    /' || true
    echo "    log: $out/log"
  fi
done
echo "fuzz.sh: $failed of ${#targets[@]} targets failed; $(( $(date +%s) - start )) s in all"
[ "$failed" -eq 0 ]
