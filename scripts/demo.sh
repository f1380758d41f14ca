#!/usr/bin/env bash
# Fresh Debian 12 machine → packages, build, and the main job on a bundled example:
# compile a Mixtral-style MoE block from its config.json to a shared library, run it on the
# example checkpoint, and check the output against the independent float64 reference.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bash "$src/scripts/build.sh"
cd "$src"
family=${1:-mixtral}
ex=examples/$family
out=build/demo/$family
mkdir -p "$out"
prefix=$(cat "$ex/prefix.txt")

set -x
build/bin/moec compile "$ex/config.json" -o "$out/layer.so"
build/bin/moe-run "$out/layer.so" --weights "$ex/model.safetensors" --prefix "$prefix" \
  --input "$ex/input.npy" --output "$out/y.npy" --stats "$out/stats.json"
/usr/bin/python3 tests/reference/moe_reference.py --config "$ex/config.json" \
  --weights "$ex/model.safetensors" --prefix "$prefix" --input "$ex/input.npy" --output "$out/y_ref.npy"
set +x
/usr/bin/python3 - "$out" <<'PY'
import json, sys, numpy as np
out = sys.argv[1]
y, ref = np.load(f"{out}/y.npy"), np.load(f"{out}/y_ref.npy")
stats = json.load(open(f"{out}/stats.json"))
err = float(np.abs(y - ref).max())
print(f"output {y.shape} {y.dtype}; max |moec - reference| = {err:.2e} (max |reference| = {np.abs(ref).max():.2f})")
print(f"tokens per expert: {stats['tokens_per_expert']}  imbalance: {stats['imbalance']:.2f}")
sys.exit(0 if err <= 1e-3 * np.abs(ref).max() else 1)
PY
