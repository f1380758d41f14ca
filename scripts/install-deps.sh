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
  # test references (tests/reference uses numpy in double precision); pip for cuobjdump below
  python3 python3-numpy python3-pip
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

# The CUDA toolkit (--target cuda) is not a Debian package: it is expected at $CUDA_HOME or
# /usr/local/cuda. Some toolkit installs lack cuobjdump, which the SASS test (HMMA in the
# matmul kernels) needs: take it (and nvdisasm, which it runs) from NVIDIA's PyPI wheels. Without a toolkit, or if the wheel
# cannot be fetched, the CUDA lit tests report UNSUPPORTED (never passed).
cuda_home=${CUDA_HOME:-/usr/local/cuda}
tools=/opt/moec/cuda-tools
if [ -x "$cuda_home/bin/ptxas" ] && [ ! -x "$cuda_home/bin/cuobjdump" ] && ! command -v cuobjdump >/dev/null \
   && [ ! -x "$tools/nvidia/cu13/bin/nvdisasm" ]; then
  if python3 -m pip install -q --disable-pip-version-check --break-system-packages \
       --target "$tools" nvidia-cuda-cuobjdump==13.2.86 nvidia-cuda-nvdisasm==13.2.86 >/dev/null 2>&1; then
    echo "install-deps: cuobjdump from PyPI in $tools/nvidia/cu13/bin"
  else
    echo "install-deps: note: could not fetch cuobjdump (PyPI); the SASS test will be UNSUPPORTED"
  fi
fi
