#!/usr/bin/env bash
# Installs every package moec needs to build and test on Debian 12 (bookworm), as root.
# LLVM/MLIR 22 comes from bookworm-security; nothing is downloaded outside Debian's archive.
set -euo pipefail

packages=(
  # toolchain and build
  cmake ninja-build ccache git
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools clang-22 lld-22
  # LLVM's OpenMP runtime: compiled layers run their tile loops on it
  libomp-22-dev
  # sanitizer and libFuzzer runtimes (scripts/sanitize.sh, scripts/fuzz.sh)
  libclang-rt-22-dev
  # libraries (OpenBLAS: moe-bench's blas baseline)
  libfmt-dev catch2 nlohmann-json3-dev libopenblas-dev pkg-config
  # test references (tests/reference uses numpy in double precision)
  python3 python3-numpy
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all packages present"
