#!/usr/bin/python3
"""Generates the small runnable example of each MoE family, deterministically.

For each family writes OUT/<family>/:
  config.json        a small Hugging Face config with the family's real keys and model_type
  model.safetensors  the block's weights under a realistic prefix, plus one unrelated tensor
  prefix.txt         that prefix (pass it to moe-run --prefix)
  input.npy          float32 [7, hidden] activations

Weights are normal / sqrt(fan_in), so activations and outputs are O(1). The same seed gives the
same F32 values for every --dtype; bf16/f16 files hold those values rounded.

  /usr/bin/python3 scripts/gen_example.py [--out-dir examples] [--dtype f32|bf16|f16]
                                          [--family NAME ...]
"""

import argparse
import json
import os
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import moe_reference  # noqa: E402
import safetensors_io  # noqa: E402

INPUT_TOKENS = 7

# prefix, name of an unrelated tensor of the same layer (so that a reader must honour the
# prefix), config. Sizes are small; routing keys mirror the real models in
# shared/model-configs, with non-trivial values where the real ones are trivial.
EXAMPLES = {
    "mixtral": ("model.layers.0.block_sparse_moe.",
                "model.layers.0.post_attention_layernorm.weight", {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
        "hidden_size": 64, "intermediate_size": 48, "num_local_experts": 8,
        "num_experts_per_tok": 2, "hidden_act": "silu", "num_hidden_layers": 1}),
    "qwen2_moe": ("model.layers.0.mlp.", "model.layers.0.post_attention_layernorm.weight", {
        "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe",
        "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 64, "num_experts": 8, "num_experts_per_tok": 2,
        "norm_topk_prob": False, "hidden_act": "silu", "num_hidden_layers": 1}),
    "qwen3_moe": ("model.layers.0.mlp.", "model.layers.0.post_attention_layernorm.weight", {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
        "num_experts": 16, "num_experts_per_tok": 4, "norm_topk_prob": True,
        "hidden_act": "silu", "num_hidden_layers": 1}),
    "olmoe": ("model.layers.0.mlp.", "model.layers.0.post_attention_layernorm.weight", {
        "architectures": ["OlmoeForCausalLM"], "model_type": "olmoe",
        "hidden_size": 64, "intermediate_size": 32, "num_experts": 16,
        "num_experts_per_tok": 4, "norm_topk_prob": False, "hidden_act": "silu",
        "num_hidden_layers": 1}),
    "deepseek_v2": ("model.layers.1.mlp.", "model.layers.1.post_attention_layernorm.weight", {
        "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
        "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
        "n_routed_experts": 16, "n_shared_experts": 2, "num_experts_per_tok": 4,
        "n_group": 4, "topk_group": 2, "topk_method": "group_limited_greedy",
        "scoring_func": "softmax", "routed_scaling_factor": 2.0, "norm_topk_prob": False,
        "hidden_act": "silu", "first_k_dense_replace": 1, "num_hidden_layers": 2}),
    "deepseek_v3": ("model.layers.1.mlp.", "model.layers.1.post_attention_layernorm.weight", {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
        "n_routed_experts": 16, "n_shared_experts": 1, "num_experts_per_tok": 4,
        "n_group": 4, "topk_group": 2, "topk_method": "noaux_tc", "scoring_func": "sigmoid",
        "routed_scaling_factor": 2.5, "norm_topk_prob": True, "hidden_act": "silu",
        "first_k_dense_replace": 1, "num_hidden_layers": 2}),
    # Capacity 8 for 8 experts: nothing drops at a handful of tokens, many do at 64+.
    "switch_transformers": ("encoder.block.1.layer.1.mlp.",
                            "encoder.block.1.layer.1.layer_norm.weight", {
        "architectures": ["SwitchTransformersForConditionalGeneration"],
        "model_type": "switch_transformers", "d_model": 64, "d_ff": 48, "num_experts": 8,
        "expert_capacity": 8, "feed_forward_proj": "relu", "dense_act_fn": "relu",
        "is_gated_act": False, "router_bias": False, "encoder_sparse_step": 2,
        "decoder_sparse_step": 2, "num_layers": 2, "num_decoder_layers": 2}),
}

# DeepSeek keeps the correction bias in F32 even in BF16 checkpoints.
F32_ALWAYS = ("gate.e_score_correction_bias",)

# Larger shapes, generated where they are used (tests/e2e/run_e2e.py writes them into its scratch
# directory) rather than kept in examples/: their matmuls run several pipeline stages of 64
# inputs and end in partial tiles (hidden 704 = 11 x 64 = 5 x 128 + 64, expert width 400 =
# 6 x 64 + 16, shared width 208 = 3 x 64 + 16), with a gated shared expert.
LARGE = {
    "qwen2_moe_wide": ("model.layers.0.mlp.", "model.layers.0.post_attention_layernorm.weight", {
        "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe",
        "hidden_size": 704, "intermediate_size": 1024, "moe_intermediate_size": 400,
        "shared_expert_intermediate_size": 208, "num_experts": 8, "num_experts_per_tok": 2,
        "norm_topk_prob": False, "hidden_act": "silu", "num_hidden_layers": 1}),
}
ALL = {**EXAMPLES, **LARGE}


def family_seed(family):
    return zlib.crc32(family.encode())


def make_tensors(family):
    """name -> float32 array for the whole example checkpoint."""
    prefix, extra, cfg = ALL[family]
    spec = moe_reference.parse_config(cfg)
    rng = np.random.default_rng(family_seed(family))
    tensors = {}
    for role, (name, shape, per_expert) in moe_reference.tensor_shapes(spec).items():
        for e in range(spec.num_experts) if per_expert else [None]:
            if role == "bias":
                # Comparable to the spread of sigmoid scores, so it changes some selections.
                values = rng.uniform(-0.2, 0.2, size=shape)
            else:
                values = rng.standard_normal(shape) / np.sqrt(shape[-1])
            tensors[prefix + name.format(e=e)] = values.astype(np.float32)
    tensors[extra] = np.ones(spec.hidden, dtype=np.float32)
    return tensors


def write_example(family, out_dir, dtype, config_only=False):
    prefix, _, cfg = ALL[family]
    d = os.path.join(out_dir, family)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(d, "prefix.txt"), "w") as f:
        f.write(prefix + "\n")
    if config_only:
        return d
    st_dtype = dtype.upper()
    encoded = {}
    for name, values in make_tensors(family).items():
        t = "F32" if name.endswith(F32_ALWAYS) else st_dtype
        encoded[name] = (t, values.shape, safetensors_io.encode(values, t))
    safetensors_io.save(os.path.join(d, "model.safetensors"), encoded,
                        metadata={"format": "pt", "generator": "moec scripts/gen_example.py"})
    rng = np.random.default_rng(family_seed(family) + 1)
    x = rng.standard_normal((INPUT_TOKENS, cfg.get("hidden_size", cfg.get("d_model"))))
    np.save(os.path.join(d, "input.npy"), x.astype(np.float32))
    return d


def main():
    p = argparse.ArgumentParser(description="Generates the small runnable MoE examples.")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "examples"))
    p.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32")
    p.add_argument("--family", action="append", choices=list(ALL),
                   help="only this family (repeatable); default: every small example (the "
                        "LARGE ones only by name)")
    p.add_argument("--config-only", action="store_true",
                   help="write config.json and prefix.txt only")
    a = p.parse_args()
    for family in a.family or EXAMPLES:
        d = write_example(family, a.out_dir, a.dtype, a.config_only)
        size = sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))
        print(f"{d}: {size} bytes")


if __name__ == "__main__":
    main()
