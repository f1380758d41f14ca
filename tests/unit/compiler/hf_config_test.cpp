//===- hf_config_test.cpp - The Hugging Face config frontend --------------===//
//
// Each family's keys land in the right LayerSpec fields, with the families'
// defaults; every error names the key and the family.
//
//===----------------------------------------------------------------------===//

#include "compiler/Frontend/HFConfig.h"

#include <catch2/catch.hpp>

using namespace mlir::moe;

namespace {
LayerSpec parse(const std::string &json) {
  llvm::Expected<LayerSpec> spec = parseHFConfig(json);
  if (!spec)
    FAIL(llvm::toString(spec.takeError()));
  return *spec;
}

std::string error(const std::string &json) {
  llvm::Expected<LayerSpec> spec = parseHFConfig(json);
  REQUIRE(!spec);
  return llvm::toString(spec.takeError());
}
} // namespace

TEST_CASE("mixtral: renormalised top-k of a softmax, w1/w3/w2 experts") {
  LayerSpec s = parse(R"({"model_type": "mixtral", "hidden_size": 4096,
      "intermediate_size": 14336, "num_local_experts": 8,
      "num_experts_per_tok": 2, "hidden_act": "silu"})");
  CHECK(s.hidden == 4096);
  CHECK(s.width == 14336);
  CHECK(s.experts == 8);
  CHECK(s.k == 2);
  CHECK(s.scoring == ScoringFunc::softmax);
  CHECK(s.renormalize);
  CHECK(s.scalingFactor == 1.0);
  CHECK(s.expertGateName == "experts.{e}.w1.weight");
  CHECK(s.expertUpName == "experts.{e}.w3.weight");
  CHECK(s.expertDownName == "experts.{e}.w2.weight");
  CHECK(s.sharedWidth == 0);
}

TEST_CASE("qwen2_moe: a shared expert with a sigmoid gate; norm_topk_prob") {
  std::string base = R"({"model_type": "qwen2_moe", "hidden_size": 2048,
      "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
      "num_experts": 60, "num_experts_per_tok": 4)";
  LayerSpec s = parse(base + "}");
  CHECK_FALSE(s.renormalize);
  CHECK(s.sharedWidth == 5632);
  CHECK(s.sharedExpertGateName == "shared_expert_gate.weight");
  CHECK(s.sharedUpName == "shared_expert.up_proj.weight");
  CHECK(parse(base + R"(, "norm_topk_prob": true})").renormalize);
}

TEST_CASE("qwen3_moe and olmoe: their width keys, no shared expert") {
  LayerSpec q = parse(R"({"model_type": "qwen3_moe", "hidden_size": 2048,
      "moe_intermediate_size": 768, "num_experts": 128,
      "num_experts_per_tok": 8, "norm_topk_prob": true})");
  CHECK(q.width == 768);
  CHECK(q.renormalize);
  LayerSpec o = parse(R"({"model_type": "olmoe", "hidden_size": 2048,
      "intermediate_size": 1024, "num_experts": 64, "num_experts_per_tok": 8})");
  CHECK(o.width == 1024);
  CHECK_FALSE(o.renormalize);
  CHECK(o.sharedWidth == 0);
}

TEST_CASE("deepseek_v2: renormalise or scale, group-limited greedy") {
  std::string base = R"({"model_type": "deepseek_v2", "hidden_size": 2048,
      "moe_intermediate_size": 1408, "n_routed_experts": 64,
      "num_experts_per_tok": 6, "n_shared_experts": 2,
      "routed_scaling_factor": 16.0)";
  LayerSpec scaled = parse(base + "}");
  CHECK_FALSE(scaled.renormalize);
  CHECK(scaled.scalingFactor == 16.0);
  CHECK(scaled.groups == 1);
  CHECK(scaled.sharedWidth == 2 * 1408);
  LayerSpec normed = parse(base + R"(, "norm_topk_prob": true})");
  CHECK(normed.renormalize);
  CHECK(normed.scalingFactor == 1.0);
  LayerSpec grouped = parse(base + R"(, "topk_method": "group_limited_greedy",
      "n_group": 8, "topk_group": 3})");
  CHECK(grouped.groups == 8);
  CHECK(grouped.topkGroups == 3);
  CHECK(grouped.groupScore == GroupScore::max);
}

TEST_CASE("deepseek_v3: sigmoid, biased selection, top-2-sum groups, then scale") {
  LayerSpec s = parse(R"({"model_type": "deepseek_v3", "hidden_size": 7168,
      "moe_intermediate_size": 2048, "n_routed_experts": 256,
      "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
      "routed_scaling_factor": 2.5, "norm_topk_prob": true,
      "n_shared_experts": 1})");
  CHECK(s.scoring == ScoringFunc::sigmoid);
  CHECK(s.biasName == "gate.e_score_correction_bias");
  CHECK(s.groupScore == GroupScore::top2_sum);
  CHECK(s.groups == 8);
  CHECK(s.topkGroups == 4);
  CHECK(s.renormalize);
  CHECK(s.scalingFactor == 2.5);
  CHECK(s.sharedWidth == 2048);
}

TEST_CASE("switch_transformers: top-1 with capacity, plain ReLU experts") {
  LayerSpec s = parse(R"({"model_type": "switch_transformers", "d_model": 768,
      "d_ff": 3072, "num_experts": 8, "expert_capacity": 64})");
  CHECK(s.hidden == 768);
  CHECK(s.k == 1);
  CHECK(s.capacity == 64);
  CHECK(s.activation == Activation::relu);
  CHECK(s.expertGateName.empty());
  CHECK(s.routerName == "router.classifier.weight");
  CHECK(s.expertUpName == "experts.expert_{e}.wi.weight");
}

TEST_CASE("errors name the key and the family") {
  CHECK(error(R"({"model_type": "mixtral", "hidden_size": 64,
      "intermediate_size": 32, "num_experts_per_tok": 2})") ==
        "mixtral config: missing key 'num_local_experts'");
  CHECK(error(R"({"model_type": "mixtral", "hidden_size": -4,
      "intermediate_size": 32, "num_local_experts": 8,
      "num_experts_per_tok": 2})") ==
        "mixtral config: 'hidden_size' must be positive, got -4");
  CHECK(error(R"({"model_type": "olmoe", "hidden_size": 64,
      "intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2,
      "norm_topk_prob": "yes"})") ==
        "olmoe config: 'norm_topk_prob' must be true or false");
  CHECK(error(R"({"hidden_size": 64})").find("missing key 'model_type'") == 0);
  CHECK(error(R"([1, 2])") == "the config must be a JSON object");
  CHECK(error("{").find("invalid JSON") == 0);
  CHECK(error(R"({"model_type": "deepseek_v2", "hidden_size": 64,
      "moe_intermediate_size": 32, "n_routed_experts": 8,
      "num_experts_per_tok": 2, "topk_method": "noaux_tc"})") ==
        "deepseek_v2 config: unsupported topk_method 'noaux_tc' "
        "(deepseek_v2: greedy, group_limited_greedy)");
  CHECK(error(R"({"model_type": "deepseek_v3", "hidden_size": 64,
      "moe_intermediate_size": 32, "n_routed_experts": 16,
      "num_experts_per_tok": 2, "n_group": 16, "topk_group": 4})") ==
        "deepseek_v3 config: noaux_tc needs at least 2 experts per group, got 1");
  CHECK(error(R"({"model_type": "switch_transformers", "d_model": 64,
      "d_ff": 32, "num_experts": 8, "feed_forward_proj": "gated-gelu"})")
            .find("gated experts") != std::string::npos);
  // Strings from the config are escaped: a message stays one line
  // (found by tests/fuzz, hf-config).
  CHECK(error(R"({"model_type": "mix\ntral"})") ==
        "unknown model_type 'mix\\0Atral' (supported: mixtral, qwen2_moe, "
        "qwen3_moe, olmoe, deepseek_v2, deepseek_v3, switch_transformers)");
  CHECK(error(R"({"model_type": "mixtral", "hidden_size": 64,
      "intermediate_size": 32, "num_local_experts": 8,
      "num_experts_per_tok": 2, "hidden_act": "si\tlu"})") ==
        "mixtral config: unsupported activation 'si\\09lu' in 'hidden_act' "
        "(supported: silu, gelu, gelu_pytorch_tanh, gelu_new, relu)");
  // Sizes are bounded, so that no product of them overflows (found by
  // tests/fuzz, hf-config: 2 shared experts of width 2^63 - 4296).
  CHECK(error(R"({"model_type": "deepseek_v2", "hidden_size": 2048,
      "moe_intermediate_size": 9223372036854771512, "n_routed_experts": 64,
      "num_experts_per_tok": 6})") ==
        "deepseek_v2 config: 'moe_intermediate_size' is 9223372036854771512, "
        "more than moec supports (1048576)");
  CHECK(error(R"({"model_type": "qwen2_moe", "hidden_size": 64,
      "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2,
      "shared_expert_intermediate_size": 1048577})") ==
        "qwen2_moe config: 'shared_expert_intermediate_size' is 1048577, "
        "more than moec supports (1048576)");
}
