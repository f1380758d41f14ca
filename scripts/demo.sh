#!/usr/bin/env bash
# Fresh Debian 12 machine → packages, build, and the main job on a bundled example.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bash "$src/scripts/build.sh"
cd "$src"
echo "== moe-opt examples/mlir/mixtral_layer.mlir --moe-decompose-layer"
build/bin/moe-opt examples/mlir/mixtral_layer.mlir --moe-decompose-layer
