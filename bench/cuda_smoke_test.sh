#!/usr/bin/env bash
# Smoke test of moe-bench --device cuda (ctest bench-cuda-smoke), without a GPU:
#   bash bench/cuda_smoke_test.sh BUILD_DIR FAKE_LIBCUDA
# Compiles the tiny Mixtral example for cuda and runs moe-bench against the fake driver of the
# runtime's tests (MOERT_LIBCUDA; its kernels do nothing and its events always read 1.5 ms), so
# only the plumbing is checked: the device path is taken, the copy probe and the layer timed
# with events (directly and replayed from a CUDA graph), the JSON has the contract's fields plus
# the device's, and torch without a GPU is reported unavailable. Then a CONFIG compiled with
# --gpu-mma wgmma (tensor maps and shared memory through the fake driver), and --gpu-mma
# against a layer of the other kind, an error. Exit 77 (skipped) where moec cannot compile for cuda (no CUDA toolkit).
set -euo pipefail
build=${1:?usage: cuda_smoke_test.sh BUILD_DIR FAKE_LIBCUDA}
fake=${2:?usage: cuda_smoke_test.sh BUILD_DIR FAKE_LIBCUDA}
src=$(cd "$(dirname "$0")/.." && pwd)
python=${MOE_BENCH_PYTHON:-/usr/bin/python3}
out=$(mktemp -d "${TMPDIR:-/tmp}/moe-bench-cuda-smoke-XXXXXX")
trap 'rm -rf "$out"' EXIT

if ! "$build/bin/moec" compile "$src/examples/mixtral/config.json" --target cuda \
    -o "$out/layer.so" 2>"$out/moec.err"; then
  echo "cuda_smoke_test: SKIPPED: moec cannot compile for cuda here: $(head -n 1 "$out/moec.err")"
  exit 77
fi

MOERT_LIBCUDA=$fake FAKE_CUDA_MODE=h200 "$build/bin/moe-bench" "$out/layer.so" \
  --config "$src/examples/mixtral/config.json" --tokens 1,7 --repeats 2 --warmup 1 \
  --baselines torch,blas --json "$out/result.json" | tee "$out/stdout.txt"

"$python" - "$out/result.json" "$out/stdout.txt" <<'PY'
import json
import sys

run = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
errors = []
machine = run.get("machine", {})
if run.get("device") != "cuda":
    errors.append(f"device is {run.get('device')!r}, expected 'cuda'")
if machine.get("device") != "Fake H200" or machine.get("compute_capability") != "9.0":
    errors.append(f"machine: device {machine.get('device')!r} {machine.get('compute_capability')!r}")
# The fake's events read 1.5 ms: 2 x 256 MiB in 1.5 ms.
copy = machine.get("copy_gbps")
if not isinstance(copy, (int, float)) or abs(copy - 2 * 256 * 2**20 / 1.5e-3 * 1e-9) > 1e-6:
    errors.append(f"machine: copy_gbps is {copy!r}")
if machine.get("read_gbps") != copy:
    errors.append("machine: read_gbps is not the copy bandwidth")
for key in ("fma_gflops", "threads"):
    if key not in machine:
        errors.append(f"machine: no '{key}'")
moec = [r for r in run.get("results", []) if r.get("impl") == "moec"]
if sorted(r.get("tokens") for r in moec) != [1, 7]:
    errors.append(f"results: moec entries for {[r.get('tokens') for r in moec]}")
for r in moec:
    if r.get("samples_ms") != [1.5, 1.5] or r.get("dtype") != "bf16":
        errors.append(f"results[moec, {r.get('tokens')}]: samples {r.get('samples_ms')}, "
                      f"dtype {r.get('dtype')!r}")
    if r.get("cuda_graph_samples_ms") != [1.5, 1.5] or r.get("cuda_graph_ms") != 1.5:
        errors.append(f"results[moec, {r.get('tokens')}]: graph samples "
                      f"{r.get('cuda_graph_samples_ms')}, median {r.get('cuda_graph_ms')}")
unavailable = run.get("baselines_unavailable", {})
if "torch" not in unavailable or "blas" not in unavailable:
    errors.append(f"baselines_unavailable: {unavailable}")
if run.get("gpu_mma") != "sync":
    errors.append(f"gpu_mma is {run.get('gpu_mma')!r}, expected 'sync'")
for needle in ("Fake H200", "%MMA", "tokens 7:", "moec (graph)", "sync kernels"):
    if needle not in text:
        errors.append(f"stdout: no '{needle}'")
for e in errors:
    print(f"cuda_smoke_test: FAIL: {e}")
sys.exit(1 if errors else 0)
PY
MOERT_LIBCUDA=$fake FAKE_CUDA_MODE=h200 "$build/bin/moe-bench" "$src/examples/mixtral/config.json" \
  --device cuda --gpu-mma wgmma --tokens 1 --repeats 1 --warmup 0 --baselines none \
  --json "$out/wgmma.json" >"$out/wgmma.txt"
grep -q "wgmma kernels" "$out/wgmma.txt" || { echo "cuda_smoke_test: FAIL: no 'wgmma kernels'"; exit 1; }
"$python" -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["gpu_mma"] != "wgmma")' \
  "$out/wgmma.json" || { echo "cuda_smoke_test: FAIL: gpu_mma is not wgmma"; exit 1; }
if MOERT_LIBCUDA=$fake "$build/bin/moe-bench" "$out/layer.so" --gpu-mma wgmma --tokens 1 \
    2>"$out/mismatch.err" >/dev/null; then
  echo "cuda_smoke_test: FAIL: --gpu-mma wgmma accepted for a sync layer"; exit 1
fi
grep -q "does not match" "$out/mismatch.err" || {
  echo "cuda_smoke_test: FAIL: $(cat "$out/mismatch.err")"; exit 1; }
echo "cuda_smoke_test: OK"
