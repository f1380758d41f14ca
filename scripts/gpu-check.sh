#!/usr/bin/env bash
# The GPU check, in two halves (docs/gpu.md). The GPU machine has the CUDA driver, CMake and
# Python (numpy, PyTorch) but no LLVM/MLIR, so everything moec makes is made here:
#
#   bash scripts/gpu-check.sh --prepare   # here: build, compile every family's example and the
#                                         # benchmark shapes with --target cuda, both with
#                                         # mma.sync and with --gpu-mma wgmma, and bundle them
#                                         # with moe-run and libmoert into build-gpu/
#   bash scripts/gpu-check.sh             # on the GPU machine (device tool: carry build-gpu):
#                                         # device facts, the GPU end-to-end tests against the
#                                         # reference, then moe-bench --device cuda on the
#                                         # Mixtral-8x7B and DeepSeek-V3-like shapes against
#                                         # PyTorch; results under $OUT (default build-gpu/out)
# Environment: PYTHON (default: python3 on PATH, /usr/bin/python3 for --prepare; numpy, and
# torch for the baselines),
# GPU_CHECK_BENCH=0 skips the benchmarks, GPU_CHECK_TOKENS (default 1,16,128,1024,8192),
# GPU_CHECK_REPEATS (default 5 timed runs after 2 warm-ups, to fit the device's time),
# GPU_CHECK_BENCH_UNTIL (default 480: no benchmark starts after this many seconds).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bundle="$src/build-gpu"

if [ "${1:-}" = --prepare ]; then
  bash "$src/scripts/build.sh"
  rm -rf "$bundle"
  mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/layers"
  # NAME.cuda.so: mma.sync kernels (the default); NAME.cuda.wgmma.so: warpgroup MMAs with TMA.
  for family in mixtral qwen2_moe qwen3_moe olmoe deepseek_v2 deepseek_v3 switch_transformers; do
    "$src/build/bin/moec" compile "$src/examples/$family/config.json" --target cuda \
      -o "$bundle/layers/$family.cuda.so"
    "$src/build/bin/moec" compile "$src/examples/$family/config.json" --target cuda \
      --gpu-mma wgmma -o "$bundle/layers/$family.cuda.wgmma.so"
  done
  # The large e2e shapes (their checkpoints are generated on the GPU machine by run_e2e.py).
  "${PYTHON:-/usr/bin/python3}" "$src/scripts/gen_example.py" --out-dir "$bundle/configs" --config-only \
    --family qwen2_moe_wide >/dev/null
  for family in qwen2_moe_wide; do
    "$src/build/bin/moec" compile "$bundle/configs/$family/config.json" --target cuda \
      -o "$bundle/layers/$family.cuda.so"
    "$src/build/bin/moec" compile "$bundle/configs/$family/config.json" --target cuda \
      --gpu-mma wgmma -o "$bundle/layers/$family.cuda.wgmma.so"
    "$src/build/bin/moec" compile "$bundle/configs/$family/config.json" --target cuda \
      --gpu-mma wgmma --wgmma-gate-up-cols 128 --wgmma-down-cols 256 --wgmma-stages 3 \
      -o "$bundle/layers/$family.cuda.wgmma-128x256.so"
  done
  for shape in mixtral-8x7b deepseek-v3; do
    "$src/build/bin/moec" compile "$src/examples/configs/$shape.json" --target cuda \
      -o "$bundle/layers/$shape.cuda.so"
    "$src/build/bin/moec" compile "$src/examples/configs/$shape.json" --target cuda \
      --gpu-mma wgmma -o "$bundle/layers/$shape.cuda.wgmma.so"
  done
  # A larger blocking to compare (moec --wgmma-*: 128 gate/up and 256 down columns per block).
  "$src/build/bin/moec" compile "$src/examples/configs/mixtral-8x7b.json" --target cuda \
    --gpu-mma wgmma --wgmma-gate-up-cols 128 --wgmma-down-cols 256 \
    -o "$bundle/layers/mixtral-8x7b.cuda.wgmma-128x256.so"
  cp "$src/build/bin/moe-run" "$src/build/bin/moe-bench" "$bundle/bin/"
  cp -P "$src"/build/lib/libmoert.so* "$bundle/lib/"
  # The binaries' own RUNPATH names this build tree; the bundle uses LD_LIBRARY_PATH. Their
  # libraries travel too (the GPU machine need not have Debian's fmt or OpenBLAS), but not
  # the C and C++ runtimes, which that machine has in a newer version.
  for lib in $(ldd "$src/build/bin/moe-run" "$src/build/bin/moe-bench" |
               awk '/=> \// {print $3}' | sort -u); do
    case $(basename "$lib") in
      libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++*|libgcc_s*|libmoert*) ;;
      *) cp -L "$lib" "$bundle/lib/" ;;
    esac
  done
  du -sh "$bundle"
  echo "gpu-check: bundle ready in $bundle (carry build-gpu)"
  exit 0
fi

[ -d "$bundle/layers" ] || { echo "gpu-check: no $bundle; run --prepare first (here)" >&2; exit 2; }
out=${OUT:-"$bundle/out"}
mkdir -p "$out"
export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
python=${PYTHON:-$(command -v python3)}
start=$(date +%s)
{
  echo "date: $(date -u)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" || true
} >"$out/device.txt" 2>&1
cat "$out/device.txt"

status=0
# A hung kernel must not eat the device's time: each e2e case gets 60 s (they take about one).
export MOE_E2E_TIMEOUT_S=${MOE_E2E_TIMEOUT_S:-60}
# One part of the e2e suite (run_e2e.py -k filters) into $out/e2e-NAME.log. moe-run's host calls
# replay a CUDA graph per token count: if numbers fail, the part runs once more with direct
# launches (MOERT_CUDA_GRAPHS=0) to tell a kernel's fault from the graphs'. Sets part_status.
e2e_part() {
  local name=$1
  shift
  part_status=0
  "$python" "$src/tests/e2e/run_e2e.py" --target cuda --prebuilt "$bundle/layers" \
    --bin-dir "$bundle/bin" "$@" >"$out/e2e-$name.log" 2>&1 || part_status=$?
  tail -n 1 "$out/e2e-$name.log"
  grep '^FAIL' "$out/e2e-$name.log" | head -20 || true
  echo "gpu-check: e2e $name exit $part_status; $(( $(date +%s) - start )) s"
  if [ "$part_status" -ne 0 ] && [ "$part_status" -ne 77 ]; then
    MOERT_CUDA_GRAPHS=0 "$python" "$src/tests/e2e/run_e2e.py" --target cuda \
      --prebuilt "$bundle/layers" --bin-dir "$bundle/bin" "$@" \
      >"$out/e2e-$name-no-graphs.log" 2>&1 || true
    echo "gpu-check: e2e $name without CUDA graphs: $(tail -n 1 "$out/e2e-$name-no-graphs.log")"
  fi
}
# Every family's example at 1, 7, 64, 300 tokens and the large qwen2_moe_wide shape (several
# pipeline stages, partial tiles) at 1, 64, 300: F32 and BF16 checkpoints on the mma.sync
# kernels, bad inputs; then one case on the wgmma kernels, and if it passes all of them (BF16
# checkpoint; the large shape also with the 128 x 256 blocking).
e2e_part sync -k /f32/ -k /bf16/ -k /bad/
status=$part_status
if [ "$status" -eq 77 ]; then
  echo "gpu-check: SKIPPED: no usable CUDA device here (see $out/e2e-sync.log)"
else
  e2e_part wgmma-probe -k mixtral/wgmma/T7
  if [ "$part_status" -eq 0 ]; then
    e2e_part wgmma -k /wgmma
  else
    echo "gpu-check: the wgmma probe failed; its other cases and benchmarks are skipped"
    wgmma_broken=1
  fi
  [ "$part_status" -eq 0 ] || [ "$status" -ne 0 ] || status=1
fi

# moe-bench --device cuda on the issue's shapes: the layer on device memory against the
# Hugging Face loop and torch._grouped_mm on the same GPU, the copy bandwidth and the dense
# bf16 rate beside them. Random bf16 weights are written to /dev/shm (22.5 GB for DeepSeek-V3),
# in memory rather than on the disk. Each run is bounded so a slow one leaves the others'.
# The wgmma layers first (with the baselines), then the larger wgmma blocking and the mma.sync
# layers (without), while time remains.
if [ "$status" -ne 77 ] && [ "${GPU_CHECK_BENCH:-1}" != 0 ]; then
  tokens=${GPU_CHECK_TOKENS:-1,16,128,1024,8192}
  shm=/dev/shm
  [ -d "$shm" ] && [ -w "$shm" ] || shm=${TMPDIR:-/tmp}
  for run in mixtral-8x7b.wgmma:both deepseek-v3.wgmma:both mixtral-8x7b.wgmma-128x256:none \
             mixtral-8x7b:none deepseek-v3:none; do
    name=${run%:*} baselines=${run#*:} shape=${run%%.*}
    shape=${shape%%:*}
    layer="$bundle/layers/${name/$shape/$shape.cuda}.so"
    if [ $(( $(date +%s) - start )) -gt "${GPU_CHECK_BENCH_UNTIL:-480}" ]; then
      echo "gpu-check: no time left for moe-bench $name"
      continue
    fi
    if [ -n "${wgmma_broken:-}" ] && [[ $name == *wgmma* ]]; then
      continue
    fi
    bench_status=0
    # The one host forward per token count (for the output) is profiled launch by launch.
    TMPDIR=$shm MOE_BENCH_SCRIPT_DIR="$src/bench" MOE_BENCH_PYTHON="$python" \
      MOERT_CUDA_PROFILE="$out/profile-$name.jsonl" \
      timeout 240 "$bundle/bin/moe-bench" "$layer" --baselines "$baselines" \
      --config "$src/examples/configs/$shape.json" --tokens "$tokens" \
      --repeats "${GPU_CHECK_REPEATS:-5}" --warmup 2 \
      --json "$out/bench-$name.json" >"$out/bench-$name.txt" 2>&1 || bench_status=$?
    tail -n 40 "$out/bench-$name.txt"
    echo "gpu-check: moe-bench $name exit $bench_status; $(( $(date +%s) - start )) s"
    [ "$bench_status" -eq 0 ] || [ "$status" -ne 0 ] || status=1
  done
fi
exit $status
