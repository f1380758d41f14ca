#!/usr/bin/env bash
# Builds the whole tree (compiler, runtime, tools, unit tests, libFuzzer targets) in build-sanitize/
# with AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer (clang-22), then runs the lit
# tests, the unit and reliability tests (ctest) and the end-to-end suite (tests/e2e/run_e2e.py)
# against that build. The same build serves scripts/fuzz.sh: the tree is also instrumented for
# libFuzzer's coverage (fuzzer-no-link), which costs the tests little and saves a second build.
# Any sanitizer report fails the run (halt_on_error, and a report on moe-run's stderr breaks the
# e2e suite's one-line contract). The LAYER.so files moec generates are plain code, not instrumented;
# libmoert dlopens them inside the instrumented process, so ASan/LSan see their heap traffic.
#
#   bash scripts/sanitize.sh               # configure if needed, build, test
#   bash scripts/sanitize.sh --build-only  # configure if needed, build (scripts/fuzz.sh uses this)
# Environment: MOE_ASAN_BUILD (build dir, default build-sanitize), MOE_ASAN_JOBS (ninja -j, default 2),
# MOE_ASAN_CTEST_ARGS (extra ctest arguments, e.g. "-LE long").
# Needs the Debian package libclang-rt-22-dev (the sanitizer runtimes).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${MOE_ASAN_BUILD:-"$src/build-sanitize"}
build_only=0
[ "${1:-}" = --build-only ] && build_only=1
jobs=${MOE_ASAN_JOBS:-2}
start=$(date +%s)

if [ ! -f /usr/lib/llvm-22/lib/clang/22/lib/linux/libclang_rt.asan-x86_64.a ]; then
  echo "sanitize.sh: the sanitizer runtimes are missing: apt-get install libclang-rt-22-dev" >&2
  exit 2
fi

flags="-fsanitize=address,undefined -fsanitize=fuzzer-no-link -fno-sanitize-recover=all -fno-omit-frame-pointer -gline-tables-only"
if [ ! -f "$build/build.ninja" ]; then
  # LLVM_USE_SANITIZER tells LLVM's CMake (HandleLLVMOptions) to drop -Wl,-z,defs, which an
  # instrumented shared library (libmoert.so) cannot satisfy. Its "Undefined" part adds nothing
  # with Debian's exported config (LLVM_UBSAN_FLAGS is unset there), so the flags are explicit.
  bash "$src/scripts/configure.sh" "$build" -DLLVM_USE_SANITIZER="Address;Undefined" \
    -DMOE_ENABLE_ASSERTIONS=ON -DMOE_ENABLE_FUZZING=ON -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" >/dev/null
fi
ninja -C "$build" -j"$jobs"
built=$(date +%s)
echo "sanitize.sh: configured and built in $((built - start)) s"
[ "$build_only" -eq 1 ] && exit 0

# detect_leaks: LeakSanitizer at every instrumented process's exit (moec, moe-opt, moe-run, the
# unit tests). halt_on_error/abort_on_error: the first report fails the process.
# allow_user_poisoning=0: LLVM's BumpPtrAllocator (MLIR's attribute and type storage) poisons
# the free rest of each slab when the code allocating it is instrumented, and unpoisons what it
# hands out; libMLIR.so is not instrumented, so storage it allocates from a slab our code opened
# stays poisoned and every later read of it would be reported (use-after-poison in attribute
# verifiers, depending only on where slab boundaries fall). Real heap errors are still caught.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:allow_user_poisoning=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$src/tests/sanitizers/lsan.supp:print_suppressions=0}
export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-/usr/lib/llvm-22/bin/llvm-symbolizer}

status=0
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure -j"$jobs" \
  -R '^(lit|runtime:|compiler:|reliability:)' ${MOE_ASAN_CTEST_ARGS:-} || status=1
tested=$(date +%s)
echo "sanitize.sh: ctest (lit, unit, reliability) took $((tested - built)) s"
/usr/bin/python3 "$src/tests/e2e/run_e2e.py" --bin-dir "$build/bin" >"$build/e2e.log" 2>&1 || status=1
grep -E '^(FAIL|[0-9]+ passed)' "$build/e2e.log" || true
echo "sanitize.sh: e2e took $(( $(date +%s) - tested )) s (log: $build/e2e.log)"
echo "sanitize.sh: $([ $status -eq 0 ] && echo clean || echo FAILED) in $(( $(date +%s) - start )) s"
exit $status
