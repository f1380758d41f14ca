#!/usr/bin/python3
"""moe-bench's torch baseline: the MoE block written as the Hugging Face reference blocks are.

    torch_baseline.py --spec SPEC.json --weights W.safetensors [--prefix P] --input X.npy
                      --tokens 1,16,... --threads N [--repeats R] [--warmup W]
                      [--dtype f32|bf16] [--outputs DIR] [--evict-bytes B]
                      [--device cpu|cuda] [--impls loop,grouped_mm] [--probe-matmul]

The block: router linear, softmax or sigmoid as the family does (with DeepSeek's groups and
bias), top-k, renormalisation and scaling, then a loop over the experts that got tokens: select
the expert's tokens, SiLU-gated MLP through F.linear (ReLU MLP for Switch), multiply by the
routing weight, index_add_ into the output; shared experts on every token. SPEC.json, written by
moe-bench, holds the family's semantics (docs/families.md) and each weight's layer dtype.

Best honest configuration: torch.inference_mode(); threads = N for both torch's OpenMP pool and
OpenBLAS (Debian's torch sends float matmuls to OpenBLAS, which ignores torch.set_num_threads),
OMP_WAIT_POLICY=passive set before torch is imported (torch's spinning OpenMP workers otherwise
steal the cores OpenBLAS computes on: 2-4x slower on small machines). With --dtype bf16 the
weights are rounded to bf16 (as moec's layer stores them); the matmuls then run in bf16 if torch
does bf16 matmuls faster than f32 on this CPU (a probe at start decides), else the bf16 weights
are widened to f32 once at load. Debian's torch 1.13 has no fast bf16 CPU matmul without
AVX-512 BF16, so on AVX2 machines it runs f32 (reported as compute_dtype/weight_dtype).

On --device cuda (moe-bench --device cuda): everything on the GPU in bf16, as a bf16 model runs
(weights, router and activations), each forward timed with CUDA events. Two implementations
(--impls): `loop`, the Hugging Face block above, and `grouped_mm`, the block as MoE libraries
write it with torch._grouped_mm (tokens sorted by expert with a stable argsort, one grouped
matmul for gate and up together, one for down, the routing weight applied, index_add_ back), if
the installed torch has it. --probe-matmul also measures the dense bf16 ceiling: an
8192x8192x8192 torch.matmul, best of ten after three warm-ups ("dense_bf16_tflops").

Prints one JSON object on stdout: {"available": true, "results": [{"tokens": T,
"samples_ms": [...], "experts_hit": H}, ...], ...}, or {"available": false, "reason": ...}
when torch cannot be imported. Progress goes to stderr. With --outputs DIR, the last output of
each token count is written to DIR/torch_y_T.f32 (raw float32, [T, hidden]).
"""

import argparse
import json
import os
import re
import struct
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spec", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--input", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    p.add_argument("--compute", choices=("auto", "f32", "bf16"), default="auto",
                   help="matmul dtype for bf16 weights (default: the faster, probed)")
    p.add_argument("--outputs")
    p.add_argument("--evict-bytes", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--impls", default="loop",
                   help="comma-separated: loop (Hugging Face), grouped_mm (torch._grouped_mm)")
    p.add_argument("--probe-matmul", action="store_true")
    return p.parse_args(argv)


class Progress:
    def __init__(self):
        self.tty = sys.stderr.isatty()

    def phase(self, text):
        if self.tty:
            sys.stderr.write("\r\033[K[moe-bench] " + text)
        else:
            sys.stderr.write("[moe-bench] " + text + "\n")
        sys.stderr.flush()

    def step(self, text):
        if self.tty:
            sys.stderr.write("\r\033[K[moe-bench] " + text)
            sys.stderr.flush()

    def done(self):
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def read_safetensors(path, names):
    """name -> torch tensor (as stored: float32, bfloat16 or float16) for the given names."""
    import torch
    dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    out = {}
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        base = 8 + length
        for name in names:
            if name not in header:
                raise ValueError(f"{path}: missing tensor '{name}'")
            entry = header[name]
            if entry["dtype"] not in dtypes:
                raise ValueError(f"{path}: tensor '{name}' has dtype {entry['dtype']}; "
                                 "weights must be F32, BF16 or F16")
            begin, end = entry["data_offsets"]
            f.seek(base + begin)
            data = bytearray(f.read(end - begin))
            t = torch.frombuffer(data, dtype=dtypes[entry["dtype"]]) if data else \
                torch.empty(0, dtype=dtypes[entry["dtype"]])
            out[name] = t.reshape(entry["shape"]).clone()  # own, aligned memory
    return out


def main(argv=None):
    args = parse_args(argv)
    n = str(args.threads)
    # Before torch (and its OpenMP and BLAS libraries) is loaded.
    os.environ["OMP_WAIT_POLICY"] = "passive"
    os.environ["OMP_NUM_THREADS"] = n
    os.environ["OPENBLAS_NUM_THREADS"] = n
    os.environ["MKL_NUM_THREADS"] = n
    try:
        import numpy as np
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(json.dumps({"available": False,
                          "reason": f"cannot import torch ({e}); Debian: apt-get install "
                                    "python3-torch python3-numpy"}))
        return 0
    torch.set_num_threads(args.threads)
    progress = Progress()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print(json.dumps({"available": False,
                          "reason": f"torch {torch.__version__} sees no CUDA device"}))
        return 0
    device = torch.device(args.device)
    impls = [i for i in args.impls.split(",") if i]
    for impl in impls:
        if impl not in ("loop", "grouped_mm"):
            raise ValueError(f"unknown implementation '{impl}' (loop, grouped_mm)")

    with open(args.spec) as f:
        spec = json.load(f)
    E, k, hidden = spec["experts"], spec["top_k"], spec["hidden"]
    names, layer_dtypes = spec["names"], spec.get("dtypes", {})

    # --- weights: per expert, as the Hugging Face ModuleList of Linear layers holds them ---
    progress.phase("torch: loading the weights")
    wanted = {}
    for role, name in names.items():
        if "{e}" in name:
            wanted[role] = [args.prefix + name.replace("{e}", str(e)) for e in range(E)]
        else:
            wanted[role] = [args.prefix + name]
    raw = read_safetensors(args.weights, [n for ns in wanted.values() for n in ns])

    def prepare(role, t):
        if cuda:  # a bf16 model on the GPU: every weight bf16
            return t.to(device=device, dtype=torch.bfloat16).contiguous()
        t = t.to(torch.bfloat16) if layer_dtypes.get(role) == "bf16" else t.to(torch.float32)
        return t.contiguous()

    weights = {}
    for role, ns in wanted.items():  # one role at a time: host memory stays bounded
        weights[role] = [prepare(role, raw.pop(n)) for n in ns]
    del raw
    bf16_roles = [r for r in weights if weights[r][0].dtype == torch.bfloat16]

    compute, probe = "f32", None
    if cuda:
        compute = "bf16"
    elif bf16_roles:
        compute = args.compute
        if compute == "auto":
            w = weights["up"][0]
            xs = torch.randn(16, w.shape[1])
            wf = w.float()
            with torch.inference_mode():
                def best(fn):
                    fn()
                    times = []
                    for _ in range(3):
                        t0 = time.perf_counter()
                        fn()
                        times.append(time.perf_counter() - t0)
                    return min(times) * 1e3
                bf16_ms = best(lambda: F.linear(xs.to(torch.bfloat16), w))
                f32_ms = best(lambda: F.linear(xs, wf))
            probe = {"bf16_ms": bf16_ms, "f32_ms": f32_ms, "tokens": 16}
            compute = "bf16" if bf16_ms < f32_ms else "f32"
        if compute == "f32":  # widen once, at load
            for r in bf16_roles:
                weights[r] = [w.float().contiguous() for w in weights[r]]

    def w1(role):
        return weights[role][0] if role in weights else None

    router, bias = w1("router"), w1("bias")
    if not cuda:
        router = router.float()
    if bias is not None:
        bias = bias.float()
    act = {"silu": F.silu, "swish": F.silu, "relu": F.relu, "gelu": F.gelu,
           "gelu_new": lambda v: F.gelu(v, approximate="tanh"),
           "gelu_pytorch_tanh": lambda v: F.gelu(v, approximate="tanh")}[spec["act"]]
    gated = "gate" in weights

    def mlp(x, gate_w, up_w, down_w):
        """The expert MLP (HF's MixtralBlockSparseTop2MLP / Qwen2MoeMLP / DeepseekV2MLP)."""
        xin = x.to(up_w.dtype)
        if gate_w is not None:
            h = act(F.linear(xin, gate_w)) * F.linear(xin, up_w)
        else:
            h = act(F.linear(xin, up_w))
        return F.linear(h, down_w).to(x.dtype)

    n_group, topk_group = spec["n_group"], spec["topk_group"]
    group_score = spec["group_score"]
    renorm, eps, scaling = spec["renormalize"], spec["renorm_eps"], spec["scaling"]
    capacity = spec["capacity"]
    shared = "shared_up" in weights
    shared_gate = w1("shared_expert_gate")
    if shared_gate is not None and not cuda:
        shared_gate = shared_gate.float()

    def route(x):
        """(selected [T, k], routing weights [T, k]) as the Hugging Face blocks route."""
        T = x.shape[0]
        router_logits = F.linear(x, router)
        if spec["scoring"] == "softmax":
            scores = F.softmax(router_logits, dim=-1, dtype=torch.float32)
        else:
            scores = router_logits.sigmoid()
        select = scores if bias is None else scores + bias
        if group_score and n_group > 1:  # DeepSeek's group-limited selection
            grouped = select.view(T, n_group, -1)
            if group_score == "max":
                group_scores = grouped.max(dim=-1).values
            else:
                group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)
            group_idx = torch.topk(group_scores, k=topk_group, dim=-1, sorted=False)[1]
            group_mask = torch.zeros_like(group_scores)
            group_mask.scatter_(1, group_idx, 1)
            score_mask = group_mask.unsqueeze(-1).expand(T, n_group, E // n_group).reshape(T, -1)
            select = select.masked_fill(~score_mask.bool(), float("-inf"))
        _, selected = torch.topk(select, k, dim=-1)
        routing = scores.gather(1, selected)
        if renorm:
            routing = routing / (routing.sum(dim=-1, keepdim=True) + eps)
        if scaling != 1.0:
            routing = routing * scaling
        return selected, routing

    def shared_part(x, out):
        if shared:
            s = mlp(x, weights["shared_gate"][0], weights["shared_up"][0],
                    weights["shared_down"][0])
            if shared_gate is not None:
                s = torch.sigmoid(F.linear(x, shared_gate)) * s
            out = out + s
        return out

    def forward(x):
        T = x.shape[0]
        selected, routing = route(x)
        expert_mask = F.one_hot(selected, num_classes=E)  # [T, k, E]
        if capacity:  # Switch: each expert keeps its first `capacity` slots in token order
            flat = expert_mask.view(T * k, E)
            expert_mask = (flat * (flat.cumsum(dim=0) <= capacity)).view(T, k, E)
        expert_mask = expert_mask.permute(2, 1, 0)  # [E, k, T]
        out = torch.zeros_like(x)
        hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero().flatten().tolist()
        for e in hit:
            idx, top_x = torch.where(expert_mask[e])
            current = x[top_x]
            y = mlp(current, weights["gate"][e] if gated else None, weights["up"][e],
                    weights["down"][e]) * routing[top_x, idx, None]
            out.index_add_(0, top_x, y.to(out.dtype))
        return shared_part(x, out), len(hit)

    forwards = {"loop": forward}
    unavailable = {}
    if "grouped_mm" in impls:
        grouped_mm = getattr(torch, "_grouped_mm", None)
        if grouped_mm is None:
            unavailable["torch_grouped_mm"] = f"torch {torch.__version__} has no torch._grouped_mm"
        elif capacity:
            unavailable["torch_grouped_mm"] = "expert capacity (Switch) is not written for it"
        else:
            forwards["grouped_mm"] = make_grouped_forward(
                torch, F, route, shared_part, act, weights, E, k, gated, grouped_mm)

    x_all = torch.from_numpy(np.load(args.input, allow_pickle=False)).float()
    if cuda:
        x_all = x_all.to(device=device, dtype=torch.bfloat16)
    evict = np.ones(args.evict_bytes // 4, dtype=np.float32) if args.evict_bytes > 0 else None
    tokens = [int(t) for t in args.tokens.split(",") if t]
    results = []

    def timed(fn, x):
        """(ms, result) of one call: wall clock on the CPU, CUDA events on the GPU."""
        if not cuda:
            t0 = time.perf_counter()
            result = fn(x)
            return (time.perf_counter() - t0) * 1e3, result
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = fn(x)
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop), result

    with torch.inference_mode():
        for impl, fn in forwards.items():
            if impl not in impls:
                continue
            for T in tokens:
                x = x_all[:T].contiguous()
                samples = []
                total = args.warmup + args.repeats
                label = f"torch {impl:<10} T={T:<5}"
                progress.phase(label)
                for i in range(total):
                    progress.step(f"{label} {i}/{total}")
                    if evict is not None:
                        evict.sum()
                    ms, (y, hit) = timed(fn, x)
                    if i >= args.warmup:
                        samples.append(ms)
                if args.outputs:
                    name = f"torch_y_{T}.f32" if impl == "loop" else f"torch_{impl}_y_{T}.f32"
                    y.float().cpu().numpy().astype("<f4").tofile(os.path.join(args.outputs, name))
                results.append({"tokens": T, "impl": impl, "samples_ms": samples,
                                "experts_hit": hit})
        dense = probe_matmul(torch) if cuda and args.probe_matmul else None
    progress.done()
    found = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    blas = found.group(1) if found else "?"
    wdt = "bf16" if compute == "bf16" else "f32"
    print(json.dumps({
        "available": True, "torch_version": torch.__version__,
        "threads": torch.get_num_threads(), "blas_info": blas,
        "weight_dtype": wdt, "compute_dtype": wdt, "bf16_probe": probe,
        "env": {v: os.environ.get(v) for v in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                               "OPENBLAS_NUM_THREADS")},
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "dense_bf16_tflops": dense, "unavailable_impls": unavailable,
        "results": results}))
    return 0


def make_grouped_forward(torch, F, route, shared_part, act, weights, E, k, gated, grouped_mm):
    """The block with grouped matmuls: slots sorted by expert (stable), gate and up as one
    [E, H, 2I] grouped product, down as one [E, I, H], weighted, index_add_ back per token.
    Weights are stacked once here; the stacks are transposed views (column-major), the
    layout torch._grouped_mm takes for its second operand."""
    up = torch.stack(weights["up"])  # [E, I, H]
    width = up.shape[1]
    gate_up = torch.cat([torch.stack(weights["gate"]), up], dim=1) if gated else up
    gate_up_t = gate_up.transpose(1, 2)                   # [E, H, (2)I]
    down_t = torch.stack(weights["down"]).transpose(1, 2)  # [E, I, H]

    def forward(x):
        T = x.shape[0]
        selected, routing = route(x)
        flat = selected.reshape(-1)
        order = torch.argsort(flat, stable=True)
        offs = torch.cumsum(torch.bincount(flat, minlength=E), 0).to(torch.int32)
        token = order // k
        xs = x[token]
        h = grouped_mm(xs, gate_up_t, offs=offs)
        h = act(h[:, :width]) * h[:, width:] if gated else act(h)
        y = grouped_mm(h, down_t, offs=offs)
        y = y * routing.reshape(-1)[order, None].to(y.dtype)
        out = torch.zeros_like(x).index_add_(0, token, y.to(x.dtype))
        return shared_part(x, out), None

    def counted(x):
        out, _ = forward(x)
        return out, -1  # experts hit: not counted (it would synchronise)

    return counted


def probe_matmul(torch, n=8192):
    """TFLOP/s of an n x n x n bf16 matmul on the GPU: best of ten after three warm-ups."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(10):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        stop.record()
        stop.synchronize()
        best = max(best, 2 * n ** 3 / (start.elapsed_time(stop) * 1e-3) * 1e-12)
    return best


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, KeyError) as e:
        sys.stderr.write(f"torch_baseline: error: {e}\n")
        sys.exit(1)
