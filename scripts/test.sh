#!/usr/bin/env bash
# Fresh Debian 12 machine → packages, build, and the whole test suite:
#   1. ctest on build/ (lit + FileCheck, Catch2 unit and reliability tests, the reference's own
#      tests, end-to-end tests of every family, the moe-bench smoke test);
#   2. scripts/sanitize.sh: the same tests against an ASan + UBSan + LeakSanitizer build;
#   3. scripts/fuzz.sh: each libFuzzer target on MOE_FUZZ_RUNS (default 20000) inputs from a fixed
#      seed: reproducible, so a CI run never fails by chance (longer, time-bounded campaigns:
#      `bash scripts/fuzz.sh 3600`, docs/guarantees.md).
#
#   bash scripts/test.sh           # all three (what .ci/run runs)
#   bash scripts/test.sh --quick   # ctest only
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
quick=0
[ "${1:-}" = --quick ] && quick=1
start=$(date +%s)
bash "$src/scripts/build.sh"
(cd "$src/build" && ctest --output-on-failure -j"$(nproc)")
echo "test.sh: build and ctest took $(( $(date +%s) - start )) s"
[ "$quick" -eq 1 ] && exit 0
bash "$src/scripts/sanitize.sh"
MOE_FUZZ_RUNS=${MOE_FUZZ_RUNS:-20000} bash "$src/scripts/fuzz.sh"
echo "test.sh: everything passed in $(( $(date +%s) - start )) s"
