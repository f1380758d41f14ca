#!/usr/bin/python3
"""Checks of the float64 MoE reference: hand-worked routing and block cases (4 experts, chosen
logits, expected selections and weights worked out by hand), the safetensors reader and writer,
the CLI's rejection of bad inputs, and agreement with a second, per-token implementation on
every bundled example.

  /usr/bin/python3 tests/reference/test_reference.py [-k SUBSTRING]

Prints one line per test and a final `N passed, N failed`; exits non-zero on a failure.
"""

import math
import os
import subprocess
import sys
import tempfile
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_example  # noqa: E402
import moe_reference as ref  # noqa: E402
import safetensors_io as st  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def close(got, want, tol=1e-12):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    assert np.allclose(got, want, rtol=tol, atol=tol), f"{got.tolist()} != {want.tolist()}"


def spec(**cfg):
    return ref.parse_config(cfg)


def mixtral(**over):
    return spec(model_type="mixtral", hidden_size=4, intermediate_size=1, num_local_experts=4,
                num_experts_per_tok=2, **over)


def qwen(family="qwen3_moe", **over):
    width = "intermediate_size" if family == "olmoe" else "moe_intermediate_size"
    return spec(model_type=family, hidden_size=4, **{width: 1}, num_experts=4,
                num_experts_per_tok=2, **over)


def deepseek(family, **over):
    cfg = dict(model_type=family, hidden_size=4, moe_intermediate_size=1, n_routed_experts=4,
               num_experts_per_tok=2, n_shared_experts=0)
    cfg.update(over)
    return spec(**cfg)


def switch(**over):
    return spec(model_type="switch_transformers", d_model=4, d_ff=1, num_experts=4, **over)


# Router logits whose softmax is exactly p (up to rounding), and whose sigmoid is exactly p.
def softmax_logits(*p):
    return np.log(np.array([p], dtype=np.float64))


def sigmoid_logits(*p):
    p = np.array([p], dtype=np.float64)
    return np.log(p / (1.0 - p))


P = (0.1, 0.2, 0.3, 0.4)


# --- routing, by hand ---

@test
def mixtral_top2_renormalised():
    idx, w, gaps = ref.route(mixtral(), softmax_logits(*P))
    assert idx.tolist() == [[3, 2]]
    close(w, [[4 / 7, 3 / 7]])
    close(gaps, [[0.1, math.inf]])


@test
def ties_go_to_the_lower_expert():
    idx, _, gaps = ref.route(mixtral(), np.array([[1.0, 1.0, 1.0, 0.0]]))
    assert idx.tolist() == [[0, 1]]
    assert gaps[0, 0] == 0.0


@test
def qwen_weights_renormalised_only_with_norm_topk_prob():
    for family in ("qwen2_moe", "qwen3_moe", "olmoe"):
        extra = {"shared_expert_intermediate_size": 1} if family == "qwen2_moe" else {}
        idx, w, _ = ref.route(qwen(family, **extra), softmax_logits(*P))
        assert idx.tolist() == [[3, 2]], family
        close(w, [[0.4, 0.3]])
        _, w, _ = ref.route(qwen(family, norm_topk_prob=True, **extra), softmax_logits(*P))
        close(w, [[4 / 7, 3 / 7]])


@test
def deepseek_v2_greedy_scaled():
    # Experts 2 and 3 tie at 0.3: the lower index wins; the gap is exactly 0.
    s = deepseek("deepseek_v2", routed_scaling_factor=2.0)
    idx, w, gaps = ref.route(s, softmax_logits(0.35, 0.05, 0.3, 0.3))
    assert idx.tolist() == [[0, 2]]
    close(w, [[0.7, 0.6]])
    close(gaps, [[0.0, math.inf]])


@test
def deepseek_v2_norm_topk_prob_replaces_scaling():
    s = deepseek("deepseek_v2", routed_scaling_factor=2.0, norm_topk_prob=True)
    _, w, _ = ref.route(s, softmax_logits(0.35, 0.05, 0.3, 0.3))
    close(w, [[0.35 / 0.65, 0.3 / 0.65]])


@test
def deepseek_v2_top1_ignores_norm_topk_prob():
    s = deepseek("deepseek_v2", num_experts_per_tok=1, routed_scaling_factor=2.0,
                 norm_topk_prob=True)
    idx, w, _ = ref.route(s, softmax_logits(0.35, 0.05, 0.3, 0.3))
    assert idx.tolist() == [[0]]
    close(w, [[0.7]])


@test
def deepseek_v2_group_limited_greedy():
    # Groups {0,1} (max 0.35) and {2,3} (max 0.3); keeping one group forces expert 1 (0.05)
    # ahead of experts 2 and 3 (0.3).
    s = deepseek("deepseek_v2", topk_method="group_limited_greedy", n_group=2, topk_group=1,
                 routed_scaling_factor=2.0)
    idx, w, gaps = ref.route(s, softmax_logits(0.35, 0.05, 0.3, 0.3))
    assert idx.tolist() == [[0, 1]]
    close(w, [[0.7, 0.1]])
    close(gaps, [[math.inf, 0.05]])


@test
def deepseek_v3_bias_selects_groups_and_experts_but_not_weights():
    # Biased scores 0.9 0.1 | 0.6 0.8: group sums 1.0 and 1.4 keep the second group, so the
    # best raw score (expert 0) is excluded; weights use the unbiased 0.6 and 0.5:
    # renormalised 6/11, 5/11, times 2.
    s = deepseek("deepseek_v3", n_group=2, topk_group=1, routed_scaling_factor=2.0)
    idx, w, gaps = ref.route(s, sigmoid_logits(0.9, 0.1, 0.6, 0.5), np.array([0, 0, 0, 0.3]))
    assert idx.tolist() == [[3, 2]]
    close(w, [[10 / 11, 12 / 11]])
    close(gaps, [[math.inf, 0.4]])


@test
def deepseek_v3_top1_is_scaled_not_renormalised():
    s = deepseek("deepseek_v3", num_experts_per_tok=1, n_group=2, topk_group=2)
    idx, w, gaps = ref.route(s, sigmoid_logits(0.9, 0.1, 0.6, 0.5), np.array([0, 0, 0, 0.5]))
    assert idx.tolist() == [[3]]
    close(w, [[0.5 * 2.5]])
    close(gaps, [[0.1, math.inf]])


@test
def deepseek_v3_negative_bias_never_picks_an_excluded_expert():
    # All kept biased scores are negative; masking dropped groups with 0 instead of -inf would
    # pick expert 0 or 1.
    s = deepseek("deepseek_v3", n_group=2, topk_group=1, norm_topk_prob=False,
                 routed_scaling_factor=1.0)
    idx, w, _ = ref.route(s, sigmoid_logits(0.2, 0.1, 0.5, 0.4), np.array([-1, -1, -0.6, -0.6]))
    # Group sums: -0.8-0.9 = -1.7 and -0.1-0.2 = -0.3: the second group.
    assert idx.tolist() == [[2, 3]]
    close(w, [[0.5, 0.4]])


@test
def switch_capacity_drops_later_tokens():
    s = switch(expert_capacity=2)
    logits = np.repeat(softmax_logits(0.2, 0.4, 0.3, 0.1), 3, axis=0)
    idx, w, gaps = ref.route(s, logits)
    assert idx.tolist() == [[1], [1], [-1]]
    close(w, [[0.4], [0.4], [0.0]])
    close(gaps[:, 0], [0.1] * 3)


# --- whole blocks, by hand ---
# x = e0 and router column 0 = the logits; expert e has gate [1,0,0,0], up [(e+1),0,0,0] and
# down = unit vector e, so (relu) expert e maps x to (e+1)·unit_e.

def hand_weights(s, router_col):
    w = {"router": np.zeros((4, 4))}
    w["router"][:, 0] = router_col
    w["gate"] = np.zeros((4, 1, 4))
    w["gate"][:, 0, 0] = 1.0
    w["up"] = np.zeros((4, 1, 4))
    w["up"][:, 0, 0] = np.arange(1, 5)
    w["down"] = np.eye(4).reshape(4, 4, 1)
    if "gate" not in s.names:
        del w["gate"]
    return w


X = np.array([[1.0, 0.0, 0.0, 0.0]])


@test
def mixtral_block():
    s = mixtral(hidden_act="relu")
    r = ref.forward(s, hand_weights(s, softmax_logits(*P)[0]), X)
    close(r.output, [[0, 0, 3 * 3 / 7, 4 * 4 / 7]])
    assert r.tokens_per_expert.tolist() == [0, 0, 1, 1]


@test
def qwen2_block_with_gated_shared_expert():
    # Shared: relu(1)·2 = 2 along down [.5,.5,.5,.5], gate sigmoid(0) = 0.5 → adds 0.5 each.
    s = qwen("qwen2_moe", shared_expert_intermediate_size=1, hidden_act="relu")
    w = hand_weights(s, softmax_logits(*P)[0])
    w["shared_gate"] = np.array([[1.0, 0, 0, 0]])
    w["shared_up"] = np.array([[2.0, 0, 0, 0]])
    w["shared_down"] = np.full((4, 1), 0.5)
    w["shared_expert_gate"] = np.zeros((1, 4))
    close(ref.forward(s, w, X).output, [[0.5, 0.5, 0.5 + 0.9, 0.5 + 1.6]])


@test
def deepseek_v2_block_with_shared_experts():
    # Routed: weights 0.8 and 0.6 on experts 3 and 2; shared (width 2 = 2 × 1): 3 + 1 = 4 on
    # output 0.
    s = deepseek("deepseek_v2", n_shared_experts=2, routed_scaling_factor=2.0, hidden_act="relu")
    w = hand_weights(s, softmax_logits(*P)[0])
    w["shared_gate"] = np.array([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    w["shared_up"] = np.array([[3.0, 0, 0, 0], [1.0, 0, 0, 0]])
    w["shared_down"] = np.array([[1.0, 1.0], [0, 0], [0, 0], [0, 0]])
    close(ref.forward(s, w, X).output, [[4.0, 0, 1.8, 3.2]])


@test
def switch_block_over_capacity_is_zero():
    s = switch(expert_capacity=2)
    w = hand_weights(s, softmax_logits(*P)[0])
    r = ref.forward(s, w, np.repeat(X, 3, axis=0))
    close(r.output, [[0, 0, 0, 0.4 * 4], [0, 0, 0, 0.4 * 4], [0, 0, 0, 0]])
    assert r.tokens_per_expert.tolist() == [0, 0, 0, 2]


@test
def activations():
    x = np.array([1.0, -1.0])
    close(ref.ACTIVATIONS["silu"](x), [1 / (1 + math.exp(-1)), -1 / (1 + math.e)])
    close(ref.ACTIVATIONS["gelu"](x), [0.8413447460685429, -0.15865525393145707])
    close(ref.ACTIVATIONS["gelu_pytorch_tanh"](x), [0.8411919906082768, -0.15880800939172324])
    close(ref.ACTIVATIONS["relu"](x), [1.0, 0.0])


# --- config parsing ---

@test
def family_defaults():
    assert not qwen("qwen3_moe").renormalize and not qwen("olmoe").renormalize
    v3 = deepseek("deepseek_v3", n_routed_experts=16)
    assert (v3.renormalize, v3.scaling, v3.scoring, v3.group_score) == (True, 2.5, "sigmoid",
                                                                       "top2_sum")
    assert (v3.n_group, v3.topk_group) == (8, 4)
    v2 = spec(model_type="deepseek_v2", hidden_size=4, moe_intermediate_size=1,
              n_routed_experts=4, num_experts_per_tok=2)
    assert (v2.renormalize, v2.scaling, v2.group_score, v2.shared_inter) == (False, 1.0, "", 2)
    sw = spec(model_type="switch_transformers", d_model=4, d_ff=1, num_experts=4)
    assert (sw.capacity, sw.act, sw.top_k) == (64, "relu", 1)
    assert spec(model_type="switch_transformers", d_model=4, d_ff=1, num_experts=4,
                feed_forward_proj="gelu").act == "gelu"


@test
def bad_configs_rejected():
    bad = [
        (dict(model_type="llama", hidden_size=4), "llama"),
        (dict(model_type="mixtral", hidden_size=4, intermediate_size=1, num_local_experts=4),
         "num_experts_per_tok"),
        (dict(model_type="mixtral", hidden_size=4, intermediate_size=1, num_local_experts=4,
              num_experts_per_tok=5), "exceeds"),
        (dict(model_type="mixtral", hidden_size=4, intermediate_size=1, num_local_experts=4,
              num_experts_per_tok=2, hidden_act="tanh"), "tanh"),
        (dict(model_type="deepseek_v3", hidden_size=4, moe_intermediate_size=1,
              n_routed_experts=6, num_experts_per_tok=2, n_group=4, topk_group=2), "divide"),
        (dict(model_type="deepseek_v3", hidden_size=4, moe_intermediate_size=1,
              n_routed_experts=4, num_experts_per_tok=2, n_group=4, topk_group=2), "two"),
        (dict(model_type="deepseek_v2", hidden_size=4, moe_intermediate_size=1,
              n_routed_experts=4, num_experts_per_tok=2, topk_method="noaux_tc"), "noaux_tc"),
        (dict(model_type="switch_transformers", d_model=4, d_ff=1, num_experts=4,
              feed_forward_proj="gated-gelu"), "is_gated_act"),
    ]
    for cfg, keyword in bad:
        try:
            ref.parse_config(cfg)
        except ref.InputError as e:
            assert keyword in str(e), f"{keyword!r} not in {e}"
        else:
            raise AssertionError(f"accepted {cfg}")


# --- safetensors ---

@test
def safetensors_round_trip_and_bf16_rounding():
    values = np.array([1.0, -2.5, 3.140625, 1 + 2**-8, 1 + 3 * 2**-8], dtype=np.float32)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.safetensors")
        st.save(path, {"a": ("BF16", [5], st.encode(values, "BF16")),
                       "b": ("F16", [5], st.encode(values, "F16")),
                       "c": ("F32", [1, 5], st.encode(values, "F32"))})
        with open(path, "rb") as f:
            assert int.from_bytes(f.read(8), "little") % 8 == 0
        t = st.SafetensorsFile(path)
        # Halfway cases round to even: 1 + 2^-8 → 1, 1 + 3·2^-8 → 1 + 2^-6.
        close(t.read("a"), [1.0, -2.5, 3.140625, 1.0, 1.015625], tol=0)
        close(t.read("b"), values.astype(np.float16), tol=0)
        close(t.read("c"), [values], tol=0)


@test
def safetensors_rejects_bad_files():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.safetensors")
        st.save(path, {"w": ("F32", [4, 4], st.encode(np.ones((4, 4)), "F32")),
                       "i": ("I32", [2], st.encode([1, 2], "I32"))})
        data = open(path, "rb").read()
        try:
            st.SafetensorsFile(path).read("i")
            raise AssertionError("read an I32 tensor as float")
        except st.SafetensorsError as e:
            assert "I32" in str(e)
        for broken, keyword in [(data[:-10], "truncated"), (data[:5], "truncated"),
                                (data[:8] + b"#" + data[9:], "header")]:
            open(path, "wb").write(broken)
            try:
                st.SafetensorsFile(path)
                raise AssertionError(f"accepted a file broken for {keyword}")
            except st.SafetensorsError as e:
                assert keyword in str(e), str(e)


@test
def cli_rejects_bad_inputs_without_writing():
    ex = os.path.join(ROOT, "examples", "mixtral")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "y.npy")
        bad_x = os.path.join(d, "x.npy")
        np.save(bad_x, np.zeros((3, 64)))  # float64
        for args, keyword in [(["--prefix", "nope."], "missing tensor"),
                              (["--input", bad_x], "dtype")]:
            argv = ["--config", os.path.join(ex, "config.json"),
                    "--weights", os.path.join(ex, "model.safetensors"),
                    "--prefix", "model.layers.0.block_sparse_moe.",
                    "--input", os.path.join(ex, "input.npy"), "--output", out] + args
            p = subprocess.run([sys.executable, os.path.join(HERE, "moe_reference.py")] + argv,
                               capture_output=True, text=True)
            assert p.returncode == 1 and keyword in p.stderr, p.stderr
            assert len(p.stderr.strip().splitlines()) == 1, p.stderr
            assert not os.path.exists(out)


# --- a second implementation: one token at a time, plain Python selection ---

def loop_forward(s, w, x):
    """Per-token MoE with list sorting instead of argsort and masking; returns
    (output, tokens_per_expert, gaps)."""
    e_count, k = s.num_experts, s.top_k
    act = ref.ACTIVATIONS[s.act]
    out = np.zeros_like(x)
    counts = [0] * e_count
    gaps = np.full((len(x), 2), math.inf)
    for t, xt in enumerate(x):
        logits = [float(np.dot(w["router"][e], xt)) for e in range(e_count)]
        if s.scoring == "softmax":
            m = max(logits)
            ex = [math.exp(v - m) for v in logits]
            scores = [v / sum(ex) for v in ex]
        else:
            scores = [1 / (1 + math.exp(-v)) for v in logits]
        sel = [scores[e] + (float(w["bias"][e]) if "bias" in w else 0.0) for e in range(e_count)]
        eligible = list(range(e_count))
        if s.group_score and s.n_group > 1:
            size = e_count // s.n_group
            best = [sorted(sel[g * size:(g + 1) * size], reverse=True) for g in range(s.n_group)]
            gscore = [b[0] if s.group_score == "max" else b[0] + b[1] for b in best]
            ranked = sorted(range(s.n_group), key=lambda g: (-gscore[g], g))
            if s.topk_group < s.n_group:
                gaps[t, 1] = gscore[ranked[s.topk_group - 1]] - gscore[ranked[s.topk_group]]
            eligible = [e for e in eligible if e // size in ranked[:s.topk_group]]
        ranked = sorted(eligible, key=lambda e: (-sel[e], e))
        chosen = ranked[:k]
        if len(ranked) > k:
            gaps[t, 0] = sel[ranked[k - 1]] - sel[ranked[k]]
        weights = [scores[e] for e in chosen]
        if s.renormalize:
            total = sum(weights) + s.renorm_eps
            weights = [v / total for v in weights]
        for e, wt in zip(chosen, weights):
            if s.capacity and counts[e] >= s.capacity:
                continue
            counts[e] += 1
            up = w["up"][e] @ xt
            h = act(w["gate"][e] @ xt) * up if "gate" in w else act(up)
            out[t] += wt * s.scaling * (w["down"][e] @ h)
        if s.shared_inter:
            h = act(w["shared_gate"] @ xt) * (w["shared_up"] @ xt)
            y = w["shared_down"] @ h
            if "shared_expert_gate" in w:
                y = y / (1 + math.exp(-float(w["shared_expert_gate"][0] @ xt)))
            out[t] += y
    return out, counts, gaps


def _example_agreement(family):
    prefix, _, cfg = gen_example.EXAMPLES[family]
    s = ref.parse_config(cfg)
    w = {}
    tensors = gen_example.make_tensors(family)
    for role, (name, _, per_expert) in ref.tensor_shapes(s).items():
        names = [name.format(e=e) for e in range(s.num_experts)] if per_expert else [name]
        arrays = [tensors[prefix + n].astype(np.float64) for n in names]
        w[role] = np.stack(arrays) if per_expert else arrays[0]
    x = np.random.default_rng(7).standard_normal((300, s.hidden))
    r = ref.forward(s, w, x)
    out, counts, gaps = loop_forward(s, w, x)
    close(r.output, out, tol=1e-10)
    assert r.tokens_per_expert.tolist() == counts, (r.tokens_per_expert.tolist(), counts)
    close(r.gaps, gaps, tol=1e-12)
    if s.capacity:
        assert (r.indices < 0).any(), "the example should drop tokens at 300 tokens"


def _register_agreement(family):
    def check():
        _example_agreement(family)
    check.__name__ = f"loop_agrees_{family}"
    TESTS.append(check)


for _family in gen_example.EXAMPLES:
    _register_agreement(_family)


def main():
    only = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else ""
    passed = failed = 0
    for fn in TESTS:
        if only not in fn.__name__:
            continue
        try:
            fn()
        except Exception:  # noqa: BLE001 - report every failure and carry on
            failed += 1
            print(f"FAIL {fn.__name__}\n{traceback.format_exc()}")
        else:
            passed += 1
            print(f"PASS {fn.__name__}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
