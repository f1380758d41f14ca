#!/usr/bin/env bash
# Installs the Debian packages moec needs, then configures and builds everything into build/.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bash "$src/scripts/install-deps.sh"
[ -f "$src/build/build.ninja" ] || bash "$src/scripts/configure.sh" "$src/build"
ninja -C "$src/build" -j"$(nproc)"
