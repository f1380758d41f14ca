#!/usr/bin/python3
"""End-to-end tests: compile each bundled example with moec, run it with moe-run, and compare
with the float64 reference (tests/reference/moe_reference.py).

Numeric cases, FAMILY/DTYPE/T<tokens> (e.g. mixtral/bf16/T64), for every family in examples/,
token counts 1, 7, 64, 300 and weights F32 and BF16 (the example's F32 weights rounded; the
reference reads the same rounded file):
  - `moec compile examples/F/config.json -o layer.so` (once per family), then
    `moe-run layer.so --weights W --prefix P --input x.npy --output y.npy --stats s.json`;
  - y must be float32 [T, hidden] with max |y - ref| <= 1e-3 * max |ref| over the tokens that
    are not near-ties (a routing gap below 1e-5 lets f32 routing legitimately differ; with an
    expert capacity, every token from the first near-tie on is excluded, since a different
    choice there changes later tokens' dropping);
  - s.json's "tokens_per_expert" must equal the reference's when no token is a near-tie (else,
    without capacity, only the totals must agree).
The large shapes of scripts/gen_example.py (LARGE: qwen2_moe_wide, hidden 704, expert width
400), generated into the scratch directory, run the same checks at 1, 64 and 300 tokens for
the f32 and bf16a dtypes (cuda: f32, bf16, wgmma, wgmma-128x256): matmuls over many K blocks
that end in partial tiles.

Bad-input cases, FAMILY/bad/WHAT: a checkpoint missing a tensor, with a wrong shape, with an I32
tensor, truncated, or with a corrupt header; an input of the wrong shape or of float64; a
config of an unknown model_type (moec). Each must exit non-zero with one line on stderr that
contains a keyword, and write no output file.

  /usr/bin/python3 tests/e2e/run_e2e.py [--bin-dir build/bin] [--family F]... [--tokens N]...
                                        [-k SUBSTRING]... [--list] [--keep]

`--tokens` keeps only numeric cases with those token counts. Prints one line per case and a
final `N passed, N failed`; exits non-zero on any failure. `--bin-dir tests/e2e/fake_tools`
runs the driver against stand-ins built on the reference, to test the driver itself.

`--target cuda`: the layers are compiled with `moec --target cuda` (or taken from `--prebuilt
DIR`, as `DIR/FAMILY.cuda.so` and `DIR/FAMILY.cuda.wgmma.so`, where the GPU machine has no moec)
and run with `moe-run --device cuda`. The GPU computes bf16 x bf16 -> f32 (activations and
weights rounded to bf16), so the f32 and bf16 cases use the bf16 tolerance against the
unrounded reference, and the wgmma cases the f32 tolerance against the rounding one; the bf16w
and bf16a* dtypes (CPU compile options) are left out.
Without a usable CUDA device (or toolkit, to compile) the run prints `SKIP: <why>` and exits 77,
which ctest reports as skipped, never as passed.
"""

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_example  # noqa: E402
import moe_reference as ref  # noqa: E402
import safetensors_io as st  # noqa: E402

FAMILIES = tuple(gen_example.EXAMPLES) + tuple(gen_example.LARGE)
TOKENS = (1, 7, 64, 300)
# The large shapes (gen_example.LARGE, generated into the scratch directory): fewer cases, no
# bad inputs; what they add is matmuls over several pipeline stages with partial tiles.
LARGE_TOKENS = (1, 64, 300)
LARGE_CPU_DTYPES = ("f32", "bf16a")
# f32, bf16: the checkpoint's dtype (the layer keeps f32 weights; the reference reads the same
# rounded values). bf16w: an f32 checkpoint run by a layer compiled with --weight-dtype bf16,
# which rounds the expert weights to bf16 at load time: compared with the f32 reference at the
# looser bf16 tolerance. bf16a: the BF16 checkpoint run by a layer compiled with --weight-dtype
# bf16 --activation-dtype bf16 (x and the hidden activations rounded to bf16 before the expert
# matmuls, the GPU's arithmetic), compared at the f32 tolerance with the reference that rounds
# the same activations (ref.round_to_bf16): the weights are the same values on both sides, so
# only the order of f32 sums differs, and a layer that did not round would be caught. bf16ap:
# the same with the expert weights packed in pairs of inputs (--k-pack 2, the layout AVX-512
# BF16 dot products read; widened where the CPU has none, in the instruction's order of sums).
# bf16ad: the same through the data flow of those dot products (bf16 activations in memory, each
# pair broadcast), each vdpbf16ps emulated by its two multiply-adds (--bf16-dot emulate), so
# that the path compiled for AVX-512 BF16 CPUs runs here.
# wgmma (--target cuda only): the BF16 checkpoint run by a layer whose expert FFNs are sm_90a
# warpgroup MMAs on TMA-loaded tiles (--gpu-mma wgmma), compared like bf16a: the GPU rounds x
# and the hidden activations to bf16 as the rounding reference does, so the f32 tolerance holds.
# wgmma-128x256 (large shapes only): the same with a larger blocking (moec --wgmma-gate-up-cols
# 128 --wgmma-down-cols 256 --wgmma-stages 3), the one gpu-check.sh also times.
DTYPES = ("f32", "bf16", "bf16w", "bf16a", "bf16ap", "bf16ad")
CUDA_DTYPES = ("f32", "bf16", "wgmma")
LARGE_CUDA_DTYPES = CUDA_DTYPES + ("wgmma-128x256",)
# The compile options of each layer variant.
LAYER_OPTIONS = {
    "f32": ["--weight-dtype", "f32"],
    "bf16": ["--weight-dtype", "bf16"],
    "bf16a": ["--weight-dtype", "bf16", "--activation-dtype", "bf16"],
    "bf16ap": ["--weight-dtype", "bf16", "--activation-dtype", "bf16", "--k-pack", "2",
               "--bf16-dot", "none"],
    "bf16ad": ["--weight-dtype", "bf16", "--activation-dtype", "bf16", "--bf16-dot", "emulate"],
    "wgmma": ["--weight-dtype", "bf16", "--gpu-mma", "wgmma"],
    "wgmma-128x256": ["--weight-dtype", "bf16", "--gpu-mma", "wgmma", "--wgmma-gate-up-cols",
                      "128", "--wgmma-down-cols", "256", "--wgmma-stages", "3"],
}
ROUNDED_ACTIVATIONS = ("bf16a", "bf16ap", "bf16ad", "wgmma", "wgmma-128x256")
RELATIVE_TOLERANCE = 1e-3
BF16_WEIGHTS_TOLERANCE = 1e-2
SKIP = 77  # ctest's SKIP_RETURN_CODE
NEAR_TIE = 1e-5
TIMEOUT_S = int(os.environ.get("MOE_E2E_TIMEOUT_S", "600"))  # per tool run


class CaseFailure(Exception):
    pass


@dataclasses.dataclass
class Case:
    name: str
    family: str
    tokens: int = 0      # 0: a bad-input case
    dtype: str = ""
    bad: str = ""


def all_cases(target="cpu", prebuilt=None):
    dtypes = DTYPES if target == "cpu" else CUDA_DTYPES
    cases = []
    for f in FAMILIES:
        if f in gen_example.LARGE:
            large = LARGE_CPU_DTYPES if target == "cpu" else LARGE_CUDA_DTYPES
            cases += [Case(f"{f}/{d}/T{t}", f, t, d) for d in large for t in LARGE_TOKENS]
            continue
        cases += [Case(f"{f}/{d}/T{t}", f, t, d) for d in dtypes for t in TOKENS]
        cases += [Case(f"{f}/bad/{what}", f, bad=what) for what in bad_inputs(f)]
    if not prebuilt:
        cases.append(Case("mixtral/bad/unknown_family", "mixtral", bad="unknown_family"))
    return cases


class Env:
    """Tools, example files and a scratch directory, with per-family results cached."""

    def __init__(self, bin_dir, work, target="cpu", prebuilt=None):
        self.moec = os.path.join(bin_dir, "moec")
        self.moe_run = os.path.join(bin_dir, "moe-run")
        self.work = work
        self.target = target
        self.prebuilt = prebuilt
        self._layers, self._weights, self._ref_weights = {}, {}, {}

    def example(self, family, name):
        if family in gen_example.LARGE:
            d = os.path.join(self.work, "generated", family)
            if not os.path.isdir(d):
                gen_example.write_example(family, os.path.dirname(d), "f32")
            return os.path.join(d, name)
        return os.path.join(ROOT, "examples", family, name)

    def config(self, family):
        return ref.read_config(self.example(family, "config.json"))

    def prefix(self, family):
        with open(self.example(family, "prefix.txt")) as f:
            return f.read().strip()

    def scratch(self, *parts):
        path = os.path.join(self.work, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def layer(self, family, weight_dtype="f32"):
        """The example compiled once per weight dtype; a compile failure fails every case."""
        key = (family, weight_dtype)
        if key not in self._layers and self.prebuilt:
            # FAMILY.TARGET.so, or FAMILY.TARGET.VARIANT.so for layers with their own options.
            variant = "" if weight_dtype == "f32" else f".{weight_dtype}"
            path = os.path.join(self.prebuilt, f"{family}.{self.target}{variant}.so")
            self._layers[key] = (path if os.path.exists(path)
                                 else CaseFailure(f"no prebuilt layer {path}"))
        if key not in self._layers:
            out = self.scratch(family, f"layer.{weight_dtype}.so")
            p = run([self.moec, "compile", self.example(family, "config.json"), "-o", out,
                     *LAYER_OPTIONS[weight_dtype], "--target", self.target])
            self._layers[key] = (out if p.returncode == 0 and os.path.exists(out)
                                 else CaseFailure(f"moec compile failed ({describe(p)})"))
        if isinstance(self._layers[key], CaseFailure):
            raise self._layers[key]
        return self._layers[key]

    def weights(self, family, dtype):
        if (family, dtype) not in self._weights:
            src = self.example(family, "model.safetensors")
            if dtype in ROUNDED_ACTIVATIONS:
                return self.weights(family, "bf16")
            if dtype in ("f32", "bf16w"):
                self._weights[family, dtype] = src
            else:
                dst = self.scratch(family, f"model.{dtype}.safetensors")
                to_bf16(src, dst)
                self._weights[family, dtype] = dst
        return self._weights[family, dtype]

    def reference(self, family, dtype, x):
        if (family, dtype) not in self._ref_weights:
            spec = ref.parse_config(self.config(family))
            w = ref.load_weights(spec, st.SafetensorsFile(self.weights(family, dtype)),
                                 self.prefix(family))
            self._ref_weights[family, dtype] = (spec, w)
        spec, w = self._ref_weights[family, dtype]
        rounding = ref.round_to_bf16 if dtype in ROUNDED_ACTIVATIONS else None
        return spec, ref.forward(spec, w, x.astype(np.float64), rounding)


def run(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    except FileNotFoundError:
        raise CaseFailure(f"{argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise CaseFailure(f"{os.path.basename(argv[0])} ran past {TIMEOUT_S} s") from None


def describe(p):
    err = p.stderr.strip().splitlines()
    return f"exit {p.returncode}" + (f": {err[-1]}" if err else "")


def to_bf16(src, dst):
    """The example's checkpoint with F32 weights rounded to BF16 (the tensors DeepSeek keeps in
    F32 stay F32)."""
    f = st.SafetensorsFile(src)
    tensors = {}
    for name in f.names():
        dtype, shape, data = f.raw(name)
        if dtype == "F32" and not name.endswith(gen_example.F32_ALWAYS):
            dtype, data = "BF16", st.encode(f.read(name), "BF16")
        tensors[name] = (dtype, shape, data)
    st.save(dst, tensors, f.metadata)


def make_input(family, tokens, hidden):
    rng = np.random.default_rng(zlib.crc32(f"{family}/{tokens}".encode()))
    return rng.standard_normal((tokens, hidden)).astype(np.float32)


# --- numeric cases ---

def check_numeric(env, case):
    layer = env.layer(case.family, "bf16" if case.dtype == "bf16w"
                      else case.dtype if case.dtype in ROUNDED_ACTIVATIONS else "f32")
    weights = env.weights(case.family, case.dtype)
    spec = ref.parse_config(env.config(case.family))
    x = make_input(case.family, case.tokens, spec.hidden)
    x_path = env.scratch(case.name, "x.npy")
    y_path, s_path = env.scratch(case.name, "y.npy"), env.scratch(case.name, "stats.json")
    np.save(x_path, x)
    p = run([env.moe_run, layer, "--weights", weights, "--prefix", env.prefix(case.family),
             "--input", x_path, "--output", y_path, "--stats", s_path,
             "--device", env.target])
    if p.returncode != 0:
        raise CaseFailure(f"moe-run failed ({describe(p)})")
    try:
        y = np.load(y_path, allow_pickle=False)
        with open(s_path) as f:
            counts = json.load(f).get("tokens_per_expert")
    except (OSError, ValueError, AttributeError) as e:
        raise CaseFailure(f"moe-run exited 0 but its outputs are unreadable: {e}") from None
    if y.dtype != np.float32 or y.shape != x.shape:
        raise CaseFailure(f"output is {y.dtype} {list(y.shape)}, expected float32 "
                          f"{list(x.shape)}")
    _, r = env.reference(case.family, case.dtype, x)

    near = r.gaps.min(axis=1) < NEAR_TIE
    compared = ~near
    if spec.capacity and near.any():
        compared[np.argmax(near):] = False
    bf16_math = case.dtype == "bf16w" or (env.target == "cuda"
                                          and case.dtype not in ROUNDED_ACTIVATIONS)
    tol = ((BF16_WEIGHTS_TOLERANCE if bf16_math else RELATIVE_TOLERANCE)
           * np.abs(r.output).max())
    err = np.abs(y.astype(np.float64) - r.output)[compared]
    max_err = err.max() if err.size else 0.0
    if not np.isfinite(y).all() or not max_err <= tol:
        worst = np.flatnonzero(compared)[np.argmax(err.max(axis=1))] if err.size else -1
        raise CaseFailure(f"max |y - ref| = {max_err:.3g} > {tol:.3g} (worst token {worst}; "
                          f"{int(near.sum())} near-ties excluded)")

    want = r.tokens_per_expert.tolist()
    if not near.any():
        if counts != want:
            raise CaseFailure(f"tokens_per_expert {counts}, reference {want}")
    elif not spec.capacity and (counts is None or sum(counts) != sum(want)):
        raise CaseFailure(f"tokens_per_expert {counts} sums to other than {sum(want)}")
    detail = f"max_err={max_err:.2e} tol={tol:.2e} compared={int(compared.sum())}/{case.tokens}"
    if spec.capacity:
        detail += f" dropped={int((r.indices < 0).sum())}"
    return detail


# --- bad-input cases ---

def bad_inputs(family):
    """what -> keyword; a missing expert weight and each kind of non-expert extra tensor."""
    spec = ref.parse_config(gen_example.EXAMPLES[family][2])
    first = "gate" if "gate" in spec.names else "up"
    cases = {"missing_expert_weight": spec.names[first].format(e=1)}
    for role in ("bias", "shared_down", "shared_expert_gate"):
        if role in spec.names:
            cases[f"missing_{role}"] = spec.names[role]
    cases.update(wrong_shape="shape", wrong_dtype="I32", truncated="truncated",
                 corrupt_header="header", input_wrong_shape="shape", input_wrong_dtype="dtype")
    return cases


def edited_checkpoint(env, case, edit):
    """A copy of the example's checkpoint with `edit(name, (dtype, shape, data))` applied to
    each tensor (None drops it)."""
    f = st.SafetensorsFile(env.example(case.family, "model.safetensors"))
    tensors = {}
    for name in f.names():
        t = edit(name, f.raw(name))
        if t is not None:
            tensors[name] = t
    path = env.scratch(case.name, "model.safetensors")
    st.save(path, tensors, f.metadata)
    return path


def check_bad(env, case):
    family, what = case.family, case.bad
    if what == "unknown_family":
        cfg = dict(env.config(family), model_type="llama")
        cfg_path = env.scratch(case.name, "config.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        out = env.scratch(case.name, "layer.so")
        return expect_rejected(run([env.moec, "compile", cfg_path, "-o", out]), "llama", out)

    keyword = bad_inputs(family)[what]
    spec = ref.parse_config(env.config(family))
    prefix = env.prefix(family)
    router = prefix + spec.names["router"]
    weights = env.example(family, "model.safetensors")
    x_path = env.example(family, "input.npy")
    if what.startswith("missing_"):
        weights = edited_checkpoint(env, case, lambda n, t: None if n == prefix + keyword else t)
    elif what == "wrong_shape":
        # A router stored transposed, [hidden, experts].
        weights = edited_checkpoint(env, case, lambda n, t: (t[0], t[1][::-1], t[2])
                                    if n == router else t)
    elif what == "wrong_dtype":
        weights = edited_checkpoint(env, case, lambda n, t: ("I32", t[1], t[2])
                                    if n == router else t)
    elif what in ("truncated", "corrupt_header"):
        with open(weights, "rb") as f:
            data = f.read()
        n = int.from_bytes(data[:8], "little")
        # Cut halfway through the tensor data, or break the JSON's opening brace.
        data = data[:8 + n + (len(data) - 8 - n) // 2] if what == "truncated" else \
            data[:8] + b"[" + data[9:]
        weights = env.scratch(case.name, "model.safetensors")
        with open(weights, "wb") as f:
            f.write(data)
    else:
        x_path = env.scratch(case.name, "x.npy")
        shape = (7, 2 * spec.hidden) if what == "input_wrong_shape" else (7, spec.hidden)
        dtype = np.float64 if what == "input_wrong_dtype" else np.float32
        np.save(x_path, make_input(family, *shape).astype(dtype))
    layer = env.layer(family)
    out = env.scratch(case.name, "y.npy")
    p = run([env.moe_run, layer, "--weights", weights, "--prefix", prefix,
             "--input", x_path, "--output", out, "--stats", env.scratch(case.name, "s.json"),
             "--device", env.target])
    return expect_rejected(p, keyword, out)


def expect_rejected(p, keyword, out):
    lines = p.stderr.strip().splitlines()
    if p.returncode == 0:
        raise CaseFailure("exit 0, expected a failure")
    if len(lines) != 1:
        raise CaseFailure(f"stderr has {len(lines)} lines, expected one: {p.stderr.strip()!r}")
    if keyword.lower() not in lines[0].lower():
        raise CaseFailure(f"stderr {lines[0]!r} does not mention {keyword!r}")
    if os.path.exists(out):
        raise CaseFailure(f"{os.path.basename(out)} was written despite the error")
    return f"exit {p.returncode}: {lines[0]}"


def cuda_unavailable(env):
    """Why the CUDA cases cannot run here (no device, driver or toolkit), or None. Asks the
    tools themselves: moe-run --device cuda checks the driver and device before anything
    else, and moec needs the CUDA toolkit to compile."""
    family = FAMILIES[0]
    try:
        layer = env.layer(family)
    except CaseFailure as e:
        if "CUDA toolkit" in str(e):
            return f"cannot compile for cuda: {e}"
        return None  # a real failure: let the cases report it
    x = env.scratch("probe", "x.npy")
    np.save(x, make_input(family, 1, ref.parse_config(env.config(family)).hidden))
    p = run([env.moe_run, layer, "--weights", env.example(family, "model.safetensors"),
             "--prefix", env.prefix(family), "--input", x,
             "--output", env.scratch("probe", "y.npy"), "--device", "cuda"])
    err = p.stderr.strip()
    if p.returncode != 0 and ("no CUDA device" in err or "CUDA driver not found" in err
                              or "needs sm_" in err):
        return err.splitlines()[-1]
    return None


def main():
    p = argparse.ArgumentParser(description="moec end-to-end tests against the reference.")
    p.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bin"),
                   help="directory holding moec and moe-run (default: build/bin)")
    p.add_argument("--family", action="append", choices=FAMILIES)
    p.add_argument("--tokens", action="append", type=int, choices=TOKENS)
    p.add_argument("-k", action="append", default=[], metavar="SUBSTRING",
                   help="only cases whose name contains SUBSTRING (repeatable: any of them)")
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--target", choices=("cpu", "cuda"), default="cpu",
                   help="compile for and run on this target (default: cpu)")
    p.add_argument("--prebuilt", metavar="DIR",
                   help="take the layers from DIR/FAMILY.TARGET.so instead of compiling them")
    a = p.parse_args()

    cases = [c for c in all_cases(a.target, a.prebuilt)
             if (not a.family or c.family in a.family)
             and (not a.tokens or c.tokens in a.tokens)
             and (not a.k or any(k in c.name for k in a.k))]
    if a.list:
        print("\n".join(c.name for c in cases))
        return 0
    if not cases:
        print("no case selected", file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="moec-e2e-")
    env = Env(os.path.abspath(a.bin_dir), work, a.target,
              os.path.abspath(a.prebuilt) if a.prebuilt else None)
    if a.target == "cuda":
        why = cuda_unavailable(env)
        if why:
            shutil.rmtree(work, ignore_errors=True)
            print(f"SKIP: {why}")
            return SKIP
    passed = failed = 0
    try:
        for c in cases:
            try:
                detail = check_bad(env, c) if c.bad else check_numeric(env, c)
            except CaseFailure as e:
                failed += 1
                print(f"FAIL {c.name}: {e}", flush=True)
            except Exception as e:  # noqa: BLE001 - a surprise fails its case, not the run
                failed += 1
                print(f"FAIL {c.name}: {type(e).__name__}: {e}", flush=True)
            else:
                passed += 1
                print(f"PASS {c.name} {detail}", flush=True)
    finally:
        if a.keep:
            print(f"scratch directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
