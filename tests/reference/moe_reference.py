#!/usr/bin/python3
"""Float64 numpy reference for one MoE block of every family moec supports.

Written from the families' published reference code (Hugging Face transformers' modeling files,
DeepSeek's modeling_deepseek.py), independently of the compiler, to serve as the test oracle:

    moe_reference.py --config C --weights W [--prefix P] --input X.npy --output Y.npy
                     [--stats S.json] [--gaps G.npy]

X is float32 [T, hidden]; Y is float64 [T, hidden]. S is {"tokens_per_expert": [...], ...}
(slots dropped by capacity not counted). G is float64 [T, 2]: per token, column 0 is the gap
between the k-th and (k+1)-th expert-selection scores (after group masking, with DeepSeek-V3's
bias), column 1 the gap between the topk_group-th and next group score; inf where there is no
such competitor. Tokens with a gap below ~1e-5 may legitimately route differently in f32.

Top-k ties go to the lower expert (or group) index. Every input is checked before anything is
written; a bad input ends with a one-line error and exit status 1.
"""

import argparse
import dataclasses
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import SafetensorsError, SafetensorsFile  # noqa: E402


class InputError(Exception):
    """A config, checkpoint or input that the reference (and moec) must reject."""


# --- activations (the names of transformers' ACT2FN that the families use) ---

_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS = {
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "swish": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": _gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": lambda x: np.maximum(x, 0.0),
}


# --- the block specification, from a Hugging Face config.json ---

@dataclasses.dataclass
class Spec:
    family: str
    hidden: int
    inter: int                 # routed expert width
    num_experts: int
    top_k: int
    act: str
    scoring: str               # "softmax" | "sigmoid"
    group_score: str           # "" (no groups) | "max" | "top2_sum"
    n_group: int
    topk_group: int
    renormalize: bool
    renorm_eps: float          # added to the sum of the k weights before dividing
    scaling: float             # multiplies the weights (after renormalising)
    capacity: int              # tokens per expert, 0 = unlimited
    shared_inter: int          # shared expert width, 0 = none
    names: dict                # role -> tensor name relative to the block ({e} = expert)


_QWEN_EXPERT = {"gate": "experts.{e}.gate_proj.weight", "up": "experts.{e}.up_proj.weight",
                "down": "experts.{e}.down_proj.weight"}


def _shared_names(stem):
    return {"shared_gate": f"{stem}.gate_proj.weight", "shared_up": f"{stem}.up_proj.weight",
            "shared_down": f"{stem}.down_proj.weight"}


def _get(cfg, key, default=None):
    """A config value; keys without a family default are required."""
    value = cfg.get(key, default)
    if value is None:
        raise InputError(f"config.json: missing key '{key}' for model_type "
                             f"'{cfg['model_type']}'")
    return value


def _positive_int(cfg, key, default=None):
    value = _get(cfg, key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"config.json: '{key}' must be a positive integer, got {value!r}")
    return value


def parse_config(cfg):
    """Spec of the MoE block described by a config dict; defaults are those of the family's
    transformers config class."""
    family = cfg.get("model_type")
    if family not in FAMILIES:
        raise InputError(f"config.json: unsupported model_type {family!r}; expected one of "
                             f"{', '.join(FAMILIES)}")
    spec = FAMILIES[family](cfg)
    if not isinstance(spec.act, str) or spec.act not in ACTIVATIONS:
        raise InputError(f"config.json: unsupported activation {spec.act!r}; expected one "
                             f"of {', '.join(ACTIVATIONS)}")
    if spec.top_k > spec.num_experts:
        raise InputError(f"config.json: num_experts_per_tok ({spec.top_k}) exceeds the "
                             f"number of experts ({spec.num_experts})")
    if spec.group_score:
        g, tg = spec.n_group, spec.topk_group
        if spec.num_experts % g or tg > g:
            raise InputError(f"config.json: n_group ({g}) must divide the {spec.num_experts} "
                                 f"experts and topk_group ({tg}) must not exceed it")
        if spec.top_k > tg * (spec.num_experts // g):
            raise InputError(f"config.json: num_experts_per_tok ({spec.top_k}) exceeds the "
                                 f"experts of the {tg} kept groups")
        if spec.group_score == "top2_sum" and spec.num_experts // g < 2:
            raise InputError("config.json: noaux_tc scores groups by their two best "
                                 "experts, so each group needs at least two")
    return spec


def _mixtral(cfg):
    return Spec("mixtral", _positive_int(cfg, "hidden_size"),
                _positive_int(cfg, "intermediate_size"), _positive_int(cfg, "num_local_experts"),
                _positive_int(cfg, "num_experts_per_tok"),
                cfg.get("hidden_act", "silu"), "softmax", "", 1, 1,
                renormalize=True, renorm_eps=0.0, scaling=1.0, capacity=0, shared_inter=0,
                names={"router": "gate.weight", "gate": "experts.{e}.w1.weight",
                       "up": "experts.{e}.w3.weight", "down": "experts.{e}.w2.weight"})


def _qwen_like(family, width_key, shared):
    def parse(cfg):
        names = {"router": "gate.weight", **_QWEN_EXPERT}
        shared_inter = 0
        if shared:
            shared_inter = _positive_int(cfg, "shared_expert_intermediate_size")
            names.update(_shared_names("shared_expert"),
                         shared_expert_gate="shared_expert_gate.weight")
        return Spec(family, _positive_int(cfg, "hidden_size"), _positive_int(cfg, width_key),
                    _positive_int(cfg, "num_experts"), _positive_int(cfg, "num_experts_per_tok"),
                    cfg.get("hidden_act", "silu"), "softmax", "", 1, 1,
                    renormalize=bool(cfg.get("norm_topk_prob", False)), renorm_eps=0.0,
                    scaling=1.0, capacity=0, shared_inter=shared_inter, names=names)
    return parse


def _deepseek(family):
    v3 = family == "deepseek_v3"

    def parse(cfg):
        top_k = _positive_int(cfg, "num_experts_per_tok")
        scoring = cfg.get("scoring_func", "sigmoid" if v3 else "softmax")
        method = cfg.get("topk_method", "noaux_tc" if v3 else "greedy")
        methods = ("noaux_tc",) if v3 else ("greedy", "group_limited_greedy")
        if scoring != ("sigmoid" if v3 else "softmax") or method not in methods:
            raise InputError(f"config.json: {family} with scoring_func {scoring!r} and "
                                 f"topk_method {method!r} is not supported")
        group_score = {"greedy": "", "group_limited_greedy": "max", "noaux_tc": "top2_sum"}[method]
        n_group = topk_group = 1
        if group_score:
            n_group = _positive_int(cfg, "n_group", 8 if v3 else None)
            topk_group = _positive_int(cfg, "topk_group", 4 if v3 else None)
        # modeling_deepseek: renormalise iff top_k > 1 and norm_topk_prob; V2 scales only
        # weights it did not renormalise, V3 scales always.
        renorm = top_k > 1 and bool(cfg.get("norm_topk_prob", v3))
        rsf = float(cfg.get("routed_scaling_factor", 2.5 if v3 else 1.0))
        scaling = rsf if (v3 or not renorm) else 1.0
        if not (math.isfinite(scaling) and scaling > 0):
            raise InputError(f"config.json: routed_scaling_factor must be positive, got {rsf}")
        # None (or 0) means no shared experts, as in modeling_deepseek.
        n_shared = cfg.get("n_shared_experts", 1 if v3 else 2) or 0
        if isinstance(n_shared, bool) or not isinstance(n_shared, int) or n_shared < 0:
            raise InputError(f"config.json: 'n_shared_experts' must be a non-negative "
                             f"integer, got {n_shared!r}")
        moe_inter = _positive_int(cfg, "moe_intermediate_size")
        names = {"router": "gate.weight", **_QWEN_EXPERT}
        if v3:
            names["bias"] = "gate.e_score_correction_bias"
        if n_shared:
            names.update(_shared_names("shared_experts"))
        return Spec(family, _positive_int(cfg, "hidden_size"), moe_inter,
                    _positive_int(cfg, "n_routed_experts"), top_k, cfg.get("hidden_act", "silu"),
                    scoring, group_score, n_group, topk_group, renormalize=renorm,
                    renorm_eps=1e-20, scaling=scaling, capacity=0,
                    shared_inter=n_shared * moe_inter, names=names)
    return parse


def _switch(cfg):
    # The config class derives dense_act_fn and is_gated_act from feed_forward_proj
    # ("relu", "gated-gelu", ...); saved configs carry all three.
    ff_proj = cfg.get("feed_forward_proj", "relu")
    act = cfg.get("dense_act_fn", ff_proj.split("-")[-1])
    if cfg.get("is_gated_act", ff_proj.startswith("gated-")):
        raise InputError("config.json: switch_transformers with is_gated_act is not "
                             "supported (its experts have only wi and wo)")
    if cfg.get("router_bias", False):
        raise InputError("config.json: switch_transformers with router_bias is not supported")
    return Spec("switch_transformers", _positive_int(cfg, "d_model"), _positive_int(cfg, "d_ff"),
                _positive_int(cfg, "num_experts"), 1, act, "softmax", "", 1, 1,
                renormalize=False, renorm_eps=0.0, scaling=1.0,
                capacity=_positive_int(cfg, "expert_capacity", 64), shared_inter=0,
                names={"router": "router.classifier.weight", "up": "experts.expert_{e}.wi.weight",
                       "down": "experts.expert_{e}.wo.weight"})


FAMILIES = {
    "mixtral": _mixtral,
    "qwen2_moe": _qwen_like("qwen2_moe", "moe_intermediate_size", shared=True),
    "qwen3_moe": _qwen_like("qwen3_moe", "moe_intermediate_size", shared=False),
    "olmoe": _qwen_like("olmoe", "intermediate_size", shared=False),
    "deepseek_v2": _deepseek("deepseek_v2"),
    "deepseek_v3": _deepseek("deepseek_v3"),
    "switch_transformers": _switch,
}


def tensor_shapes(spec):
    """role -> (name relative to the block, shape of one tensor, per-expert?)."""
    h, i, e, s = spec.hidden, spec.inter, spec.num_experts, spec.shared_inter
    shapes = {"router": [e, h], "bias": [e], "gate": [i, h], "up": [i, h], "down": [h, i],
              "shared_gate": [s, h], "shared_up": [s, h], "shared_down": [h, s],
              "shared_expert_gate": [1, h]}
    return {role: (name, shapes[role], "{e}" in name) for role, name in spec.names.items()}


def load_weights(spec, st, prefix=""):
    """role -> float64 array (per-expert tensors stacked on a leading axis), checked against
    the spec."""
    weights = {}
    for role, (name, shape, per_expert) in tensor_shapes(spec).items():
        names = ([name.format(e=e) for e in range(spec.num_experts)] if per_expert else [name])
        arrays = []
        for n in names:
            full = prefix + n
            if full not in st:
                raise InputError(f"{st.path}: missing tensor '{full}'")
            got = st.info(full)[1]
            if list(got) != shape:
                raise InputError(f"{st.path}: tensor '{full}' has shape {list(got)}, "
                                     f"expected {shape}")
            arrays.append(st.read(full))
        weights[role] = np.stack(arrays) if per_expert else arrays[0]
    return weights


# --- the block ---

def _softmax(logits):
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _stable_order(values):
    """Indices sorting each row descending, ties in index order."""
    return np.argsort(-values, axis=-1, kind="stable")


def _gap(values, order, k):
    """values[k-1] - values[k] in each row's descending order; inf without a (k+1)-th."""
    if k >= values.shape[-1]:
        return np.full(values.shape[0], np.inf)
    rows = np.arange(values.shape[0])
    return values[rows, order[:, k - 1]] - values[rows, order[:, k]]


def route(spec, logits, bias=None):
    """Selection and weights for router logits [T, E].

    Returns (indices [T, k] int64, -1 = dropped by capacity; weights [T, k]; gaps [T, 2]).
    """
    t, e = logits.shape
    scores = _softmax(logits) if spec.scoring == "softmax" else _sigmoid(logits)
    select = scores if bias is None else scores + bias
    group_gap = np.full(t, np.inf)
    if spec.group_score and spec.n_group > 1:
        grouped = select.reshape(t, spec.n_group, e // spec.n_group)
        if spec.group_score == "max":
            group_scores = grouped.max(axis=2)
        else:
            group_scores = np.sort(grouped, axis=2)[:, :, -2:].sum(axis=2)
        group_order = _stable_order(group_scores)
        group_gap = _gap(group_scores, group_order, spec.topk_group)
        kept = np.zeros((t, spec.n_group), dtype=bool)
        np.put_along_axis(kept, group_order[:, :spec.topk_group], True, axis=1)
        # Experts of dropped groups can never be chosen: -inf, not 0 (a biased score may be < 0).
        select = np.where(np.repeat(kept, e // spec.n_group, axis=1), select, -np.inf)
    order = _stable_order(select)
    indices = order[:, :spec.top_k].astype(np.int64)
    expert_gap = _gap(select, order, spec.top_k)
    weights = np.take_along_axis(scores, indices, axis=1)
    if spec.renormalize:
        weights = weights / (weights.sum(axis=1, keepdims=True) + spec.renorm_eps)
    weights = weights * spec.scaling
    if spec.capacity:
        # Slots t*k + j in order; each expert keeps its first `capacity`.
        flat = indices.reshape(-1)
        onehot = flat[:, None] == np.arange(e)
        position = np.cumsum(onehot, axis=0)[np.arange(flat.size), flat]
        dropped = (position > spec.capacity).reshape(indices.shape)
        indices = np.where(dropped, -1, indices)
        weights = np.where(dropped, 0.0, weights)
    return indices, weights, np.stack([expert_gap, group_gap], axis=1)


def round_to_bf16(a):
    """a rounded to the nearest bfloat16 (ties to even), as float64: through float32, as a
    compiled layer rounds its f32 values."""
    bits = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return bits.view(np.float32).astype(np.float64)


def _ffn(act, x, up, down, gate=None, rounding=None):
    """down(act(gate x) * up x); `rounding` (e.g. round_to_bf16) is applied to x and to the
    hidden activations before they are multiplied."""
    rounding = rounding or (lambda a: a)
    x = rounding(x)
    h = act(x @ gate.T) * (x @ up.T) if gate is not None else act(x @ up.T)
    return rounding(h) @ down.T


@dataclasses.dataclass
class Result:
    output: np.ndarray             # [T, hidden]
    indices: np.ndarray            # [T, k], -1 = dropped
    gaps: np.ndarray               # [T, 2]
    tokens_per_expert: np.ndarray  # [E]


def forward(spec, weights, x, rounding=None):
    """One forward of the block over x [T, hidden] (float64). `rounding` (round_to_bf16 for a
    layer compiled with --activation-dtype bf16) rounds the expert matmuls' activations; the
    router and the shared experts' sigmoid gate read x as it is."""
    act = ACTIVATIONS[spec.act]
    indices, routing, gaps = route(spec, x @ weights["router"].T, weights.get("bias"))
    out = np.zeros_like(x)
    for e in range(spec.num_experts):
        tokens, slots = np.nonzero(indices == e)
        if tokens.size:
            y = _ffn(act, x[tokens], weights["up"][e], weights["down"][e],
                     weights["gate"][e] if "gate" in weights else None, rounding)
            out[tokens] += routing[tokens, slots, None] * y
    if spec.shared_inter:
        shared = _ffn(act, x, weights["shared_up"], weights["shared_down"],
                      weights["shared_gate"], rounding)
        if "shared_expert_gate" in weights:
            shared = shared * _sigmoid(x @ weights["shared_expert_gate"][0])[:, None]
        out += shared
    counts = np.bincount(indices[indices >= 0], minlength=spec.num_experts).astype(np.int64)
    return Result(out, indices, gaps, counts)


def load_input(path, hidden):
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable .npy file ({e})") from None
    if x.dtype != np.float32:
        raise InputError(f"{path}: dtype {x.dtype} is not supported; expected float32")
    if x.ndim != 2 or x.shape[1] != hidden:
        raise InputError(f"{path}: shape {list(x.shape)} does not match [tokens, {hidden}]")
    return x.astype(np.float64)


def read_config(path):
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read config ({e})") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{path}: not a JSON object")
    return cfg


def run(cfg, weights_path, prefix, input_path, output_path, stats_path=None, gaps_path=None):
    """Everything the CLI does: all inputs are checked before any output is written."""
    spec = parse_config(cfg)
    try:
        weights = load_weights(spec, SafetensorsFile(weights_path), prefix)
    except (SafetensorsError, OSError) as e:
        raise InputError(str(e)) from None
    result = forward(spec, weights, load_input(input_path, spec.hidden))
    np.save(output_path, result.output)
    if stats_path:
        with open(stats_path, "w") as f:
            json.dump({"family": spec.family, "tokens": int(result.output.shape[0]),
                       "tokens_per_expert": result.tokens_per_expert.tolist()}, f)
            f.write("\n")
    if gaps_path:
        np.save(gaps_path, result.gaps)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--stats")
    p.add_argument("--gaps")
    a = p.parse_args(argv)
    try:
        run(read_config(a.config), a.weights, a.prefix, a.input, a.output, a.stats, a.gaps)
    except InputError as e:
        print(f"moe_reference: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
