#!/usr/bin/env bash
# Fresh Debian 12 machine → packages, build, and the whole test suite (lit, unit, end-to-end) via ctest.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bash "$src/scripts/build.sh"
cd "$src/build"
ctest --output-on-failure -j"$(nproc)"
