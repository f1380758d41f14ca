#!/usr/bin/env bash
# Smoke test of moe-bench (ctest): bash bench/smoke_test.sh BUILD_DIR
#
# Runs moe-bench on the tiny Mixtral example with the BLAS baseline and checks
# the JSON: the machine's limits and, for every token count, a moec and a blas
# entry with positive ms, GFLOP/s and GB/s; and that the baseline computes
# what the layer computes (same weights and inputs). Takes a few seconds.
set -euo pipefail
build=${1:?usage: smoke_test.sh BUILD_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
python=${MOE_BENCH_PYTHON:-/usr/bin/python3}
out=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-smoke-XXXXXX")
trap 'rm -rf "$out"' EXIT

"$build/bin/moe-bench" "$src/examples/mixtral/config.json" --tokens 1,7 --repeats 2 \
  --baselines blas --json "$out/result.json" | tee "$out/stdout.txt"

"$python" - "$out/result.json" "$out/stdout.txt" <<'PY'
import json
import sys

run = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
errors = []


def positive(obj, key, where):
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        errors.append(f"{where}: '{key}' is {value!r}, expected a positive number")


machine = run.get("machine", {})
for key in ("fma_gflops", "read_gbps", "threads"):
    positive(machine, key, "machine")
if not isinstance(machine.get("threads"), int):
    errors.append("machine: 'threads' is not an integer")

results = run.get("results", [])
for tokens in (1, 7):
    for impl in ("moec", "blas"):
        found = [r for r in results if r.get("tokens") == tokens and r.get("impl") == impl]
        if len(found) != 1:
            errors.append(f"results: {len(found)} entries for tokens={tokens} impl={impl}")
            continue
        r = found[0]
        where = f"results[tokens={tokens}, impl={impl}]"
        if r.get("dtype") != "f32":
            errors.append(f"{where}: dtype is {r.get('dtype')!r}, expected 'f32'")
        for key in ("ms", "gflops", "weight_gbps"):
            positive(r, key, where)
        if impl == "blas":
            diff = r.get("max_rel_diff_vs_moec")
            if not isinstance(diff, (int, float)) or not diff < 1e-3:
                errors.append(f"{where}: max_rel_diff_vs_moec is {diff!r}, expected < 1e-3 "
                              "(the baseline and the layer disagree)")
for needle in ("tokens 1:", "tokens 7:", "base/moec", "%FMA", "%BW"):
    if needle not in text:
        errors.append(f"stdout: no '{needle}' in the printed table")

for e in errors:
    print(f"smoke_test: FAIL: {e}")
if errors:
    sys.exit(1)
print(f"smoke_test: OK ({len(results)} results; FMA {machine['fma_gflops']:.1f} GFLOP/s, "
      f"read {machine['read_gbps']:.1f} GB/s on {machine['threads']} thread(s))")
PY
