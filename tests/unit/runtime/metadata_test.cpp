//===- metadata_test.cpp - Layer metadata parsing and validation ---------===//

#include "runtime/src/metadata.h"

#include "test_util.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace moert;
using namespace moert::test;
using json = nlohmann::json;

namespace {
json valid() {
  return json::parse(R"({
    "abi_version": 1, "moec_version": "0.1.0", "family": "mixtral",
    "hidden_size": 64, "num_experts": 8, "top_k": 2,
    "token_independent": true,
    "workspace_bytes_per_token": 4096, "workspace_bytes_fixed": 1024,
    "arguments": [
      {"name": "x", "role": "input", "dtype": "f32", "shape": [-1, 64]},
      {"name": "gate.weight", "role": "weight", "dtype": "f32", "shape": [8, 64]},
      {"name": "experts.{e}.w1.weight", "role": "weight", "dtype": "f32",
       "shape": [8, 32, 64], "stacked": true},
      {"name": "output", "role": "output", "dtype": "f32", "shape": [-1, 64]},
      {"name": "tokens_per_expert", "role": "stats", "dtype": "i64", "shape": [8]}
    ]})");
}

/// The message for `metadata`, without the "layer.so: invalid metadata: ".
std::string problem(const json &metadata) {
  Failure f =
      failureOf([&] { parseLayerMetadata(metadata.dump(), "layer.so"); });
  const std::string head = "layer.so: invalid metadata: ";
  if (f.status != MOERT_ERROR_FORMAT || f.message.rfind(head, 0) != 0)
    return "unexpected: " + f.message;
  return f.message.substr(head.size());
}

json with(const std::string &pointer, json value) {
  json m = valid();
  m[json::json_pointer(pointer)] = std::move(value);
  return m;
}

json without(const std::string &key) {
  json m = valid();
  m.erase(key);
  return m;
}
} // namespace

TEST_CASE("metadata: the documented example", "[metadata]") {
  LayerMetadata m = parseLayerMetadata(valid().dump(), "layer.so");
  CHECK(m.abiVersion == 1);
  CHECK(m.moecVersion == "0.1.0");
  CHECK(m.family == "mixtral");
  CHECK(m.hiddenSize == 64);
  CHECK(m.numExperts == 8);
  CHECK(m.topK == 2);
  CHECK(m.tokenIndependent);
  CHECK(m.workspaceBytesPerToken == 4096);
  CHECK(m.workspaceBytesFixed == 1024);
  REQUIRE(m.arguments.size() == 5);
  CHECK(m.inputIndex == 0);
  CHECK(m.outputIndex == 3);
  CHECK(m.statsIndex == 4);
  CHECK(m.arguments[2].stacked);
  CHECK(m.arguments[2].shape == std::vector<int64_t>{8, 32, 64});
  CHECK(m.arguments[4].dtype == ElementType::I64);

  // Optional fields; extra fields are ignored.
  json minimal = without("top_k");
  minimal.erase("moec_version");
  minimal["capacity"] = 0;
  LayerMetadata n = parseLayerMetadata(minimal.dump(), "layer.so");
  CHECK(n.topK == 0);
  CHECK(n.moecVersion.empty());
  CHECK(n.device == DeviceKind::Cpu);
}

TEST_CASE("metadata: malformed JSON", "[metadata]") {
  Failure f =
      failureOf([] { parseLayerMetadata("{\"abi_version\": 1,", "l.so"); });
  CHECK(f.status == MOERT_ERROR_FORMAT);
  CHECK_THAT(f.message, Catch::StartsWith("l.so: invalid metadata: not valid "
                                          "JSON: parse error at line 1"));
  CHECK(problem(json::array()) == "expected a JSON object, found array");
}

TEST_CASE("metadata: top-level fields", "[metadata]") {
  CHECK(problem(without("hidden_size")) == "missing field 'hidden_size'");
  CHECK(problem(without("token_independent")) ==
        "missing field 'token_independent'");
  CHECK(problem(with("/hidden_size", 0)) ==
        "field 'hidden_size' must be an integer >= 1, found 0");
  CHECK(problem(with("/num_experts", "8")) ==
        "field 'num_experts' must be an integer >= 1, found \"8\"");
  CHECK(problem(with("/workspace_bytes_fixed", -1)) ==
        "field 'workspace_bytes_fixed' must be an integer >= 0, found -1");
  CHECK(problem(with("/abi_version", 1.5)) ==
        "field 'abi_version' must be an integer >= 0, found 1.5");
  CHECK(problem(with("/family", "")) ==
        "field 'family' must be a non-empty string");
  CHECK(problem(with("/token_independent", 1)) ==
        "field 'token_independent' must be true or false");
  CHECK(problem(with("/arguments", json::array())) ==
        "field 'arguments' must be a non-empty list");
  // A cuda layer needs its launch plan (cuda_plan_test.cpp).
  CHECK(problem(with("/device", "cuda")) ==
        "missing field 'cuda' (a cuda layer needs its launch plan)");
  CHECK(parseLayerMetadata(with("/device", "cpu").dump(), "l.so").device ==
        DeviceKind::Cpu);
  CHECK(problem(with("/device", "tpu")) ==
        "field 'device' is 'tpu', expected cpu or cuda");
  CHECK(problem(with("/device", 1)) ==
        "field 'device' must be a non-empty string");
}

TEST_CASE("metadata: argument fields", "[metadata]") {
  CHECK(problem(with("/arguments/1", 3)) == "'arguments[1]' must be an object");
  CHECK(problem(with("/arguments/1/role", "bias")) ==
        "field 'arguments[1].role' is 'bias', expected input, weight, output "
        "or stats");
  CHECK(problem(with("/arguments/1/dtype", "f8")) ==
        "field 'arguments[1].dtype' is 'f8', expected f32, bf16, f16 or i64");
  CHECK(problem(with("/arguments/1/shape", json::array({8, -2}))) ==
        "field 'arguments[1].shape' holds -2, expected sizes or -1 (tokens)");
  CHECK(problem(with("/arguments/1/shape", std::vector<int>(9, 1))) ==
        "field 'arguments[1].shape' must be a list of at most 8 integers");
  CHECK(problem(with("/arguments/1/stacked", "yes")) ==
        "field 'arguments[1].stacked' must be true or false");
  json noName = valid();
  noName["arguments"][3].erase("name");
  CHECK(problem(noName) == "missing field 'arguments[3].name'");
}

TEST_CASE("metadata: role rules", "[metadata]") {
  CHECK(problem(with("/arguments/0/shape", json::array({-1, 32}))) ==
        "arguments[0] ('x') must be f32 [-1, 64], found f32 [-1, 32]");
  CHECK(problem(with("/arguments/3/dtype", "i64")) ==
        "arguments[3] ('output') must be f32 [-1, 64], found i64 [-1, 64]");
  CHECK(problem(with("/arguments/4/shape", json::array({4}))) ==
        "arguments[4] ('tokens_per_expert') must be i64 [8], found i64 [4]");
  CHECK(problem(with("/arguments/1/shape", json::array({-1, 64}))) ==
        "arguments[1] ('gate.weight') has shape [-1, 64]; weight sizes must "
        "be positive");
  CHECK(problem(with("/arguments/1/dtype", "i64")) ==
        "arguments[1] ('gate.weight') must be f32, bf16 or f16");
  CHECK(problem(with("/arguments/2/stacked", false)) ==
        "arguments[2] ('experts.{e}.w1.weight') has {e} in its name but is "
        "not stacked");
  CHECK(problem(with("/arguments/1/stacked", true)) ==
        "arguments[1] ('gate.weight') is stacked but its name has no {e} or "
        "its shape no expert dimension");
  CHECK(problem(with("/arguments/2/name", "gate.weight")) ==
        "arguments[2] ('gate.weight') repeats the name of an earlier argument");

  json noStats = valid();
  noStats["arguments"].erase(4);
  CHECK(problem(noStats) ==
        "'arguments' must hold exactly one 'stats' argument, found 0");
  json twoInputs = valid();
  twoInputs["arguments"].push_back({{"name", "x2"},
                                    {"role", "input"},
                                    {"dtype", "f32"},
                                    {"shape", {-1, 64}}});
  CHECK(problem(twoInputs) ==
        "'arguments' must hold exactly one 'input' argument, found 2");
}

TEST_CASE("metadata: weights in bf16/f16 and in panels", "[metadata]") {
  json m = valid();
  m["arguments"][1]["dtype"] = "f16";
  json &w1 = m["arguments"][2];
  w1["dtype"] = "bf16";
  w1["layout"] = "panels";
  w1["panel"] = 8;
  w1["packed_shape"] = {8, 4, 64, 8};
  LayerMetadata parsed = parseLayerMetadata(m.dump(), "layer.so");
  CHECK(parsed.arguments[1].dtype == ElementType::F16);
  CHECK(parsed.arguments[1].panel == 0);
  CHECK(parsed.arguments[1].storageShape == std::vector<int64_t>{8, 64});
  CHECK(parsed.arguments[2].dtype == ElementType::BF16);
  CHECK(parsed.arguments[2].panel == 8);
  CHECK(parsed.arguments[2].shape == std::vector<int64_t>{8, 32, 64});
  CHECK(parsed.arguments[2].storageShape == std::vector<int64_t>{8, 4, 64, 8});
  CHECK(parsed.arguments[0].storageShape == std::vector<int64_t>{-1, 64});

  // Partial panels round up; packed_shape is optional.
  CHECK(panelShape({3, 8}, 2) == std::vector<int64_t>{2, 8, 2});
  CHECK(panelShape({5, 7, 9}, 4) == std::vector<int64_t>{5, 2, 9, 4});
  json noPacked = m;
  noPacked["arguments"][2].erase("packed_shape");
  CHECK(parseLayerMetadata(noPacked.dump(), "l.so").arguments[2].storageShape ==
        std::vector<int64_t>{8, 4, 64, 8});

  CHECK(problem(with("/arguments/2/layout", "tiles")) ==
        "field 'arguments[2].layout' is 'tiles'; this runtime knows only "
        "'panels'");
  json noPanel = m;
  noPanel["arguments"][2].erase("panel");
  CHECK(problem(noPanel) == "missing field 'arguments[2].panel'");
  json wrongPacked = m;
  wrongPacked["arguments"][2]["packed_shape"] = {8, 32, 64};
  CHECK(problem(wrongPacked) ==
        "arguments[2] ('experts.{e}.w1.weight') has packed_shape [8,32,64], "
        "expected [8, 4, 64, 8] for panels of 8");
  json flat = valid();
  flat["arguments"][2]["shape"] = {8, 64};
  flat["arguments"][2]["layout"] = "panels";
  flat["arguments"][2]["panel"] = 8;
  CHECK(problem(flat) == "arguments[2] ('experts.{e}.w1.weight') has layout "
                         "'panels' but its per-expert tensor has fewer than "
                         "two dimensions");
  json output = valid();
  output["arguments"][3]["layout"] = "panels";
  output["arguments"][3]["panel"] = 8;
  CHECK(problem(output) == "arguments[3] ('output') has a layout but is not a "
                           "weight");
  CHECK(problem(with("/arguments/3/dtype", "bf16")) ==
        "arguments[3] ('output') must be f32 [-1, 64], found bf16 [-1, 64]");
}

TEST_CASE("metadata: panels with k_pack", "[metadata]") {
  json m = valid();
  json &w1 = m["arguments"][2];
  w1["dtype"] = "bf16";
  w1["layout"] = "panels";
  w1["panel"] = 8;
  w1["k_pack"] = 2;
  w1["packed_shape"] = {8, 4, 32, 16};
  LayerMetadata parsed = parseLayerMetadata(m.dump(), "layer.so");
  CHECK(parsed.arguments[2].panel == 8);
  CHECK(parsed.arguments[2].kPack == 2);
  CHECK(parsed.arguments[2].shape == std::vector<int64_t>{8, 32, 64});
  CHECK(parsed.arguments[2].storageShape ==
        std::vector<int64_t>{8, 4, 32, 16});
  CHECK(parsed.arguments[1].kPack == 1);

  // [.., ceil(out / P), ceil(in / K), P * K]; K = 1 is the plain layout,
  // and absent means 1.
  CHECK(panelShape({5, 7}, 4, 2) == std::vector<int64_t>{2, 4, 8});
  CHECK(panelShape({3, 5, 7}, 4, 2) == std::vector<int64_t>{3, 2, 4, 8});
  CHECK(panelShape({5, 8}, 4, 2) == std::vector<int64_t>{2, 4, 8});
  CHECK(panelShape({5, 7}, 4, 1) == panelShape({5, 7}, 4));
  json odd = valid();
  odd["arguments"][2]["shape"] = {8, 31, 63};
  odd["arguments"][2]["layout"] = "panels";
  odd["arguments"][2]["panel"] = 8;
  odd["arguments"][2]["k_pack"] = 2;
  CHECK(parseLayerMetadata(odd.dump(), "l.so").arguments[2].storageShape ==
        std::vector<int64_t>{8, 4, 32, 16});
  json one = m;
  one["arguments"][2]["k_pack"] = 1;
  one["arguments"][2]["packed_shape"] = {8, 4, 64, 8};
  CHECK(parseLayerMetadata(one.dump(), "l.so").arguments[2].kPack == 1);
  json absent = m;
  absent["arguments"][2].erase("k_pack");
  absent["arguments"][2].erase("packed_shape");
  CHECK(parseLayerMetadata(absent.dump(), "l.so").arguments[2].storageShape ==
        std::vector<int64_t>{8, 4, 64, 8});

  json three = m;
  three["arguments"][2]["k_pack"] = 3;
  CHECK(problem(three) == "field 'arguments[2].k_pack' is 3, expected 1 or 2");
  json zero = m;
  zero["arguments"][2]["k_pack"] = 0;
  CHECK(problem(zero) ==
        "field 'arguments[2].k_pack' must be an integer >= 1, found 0");
  json text = m;
  text["arguments"][2]["k_pack"] = "2";
  CHECK(problem(text) ==
        "field 'arguments[2].k_pack' must be an integer >= 1, found \"2\"");

  CHECK(problem(with("/arguments/2/k_pack", 2)) ==
        "field 'arguments[2].k_pack' is only valid with layout 'panels'");
  CHECK(problem(with("/arguments/1/k_pack", 1)) ==
        "field 'arguments[1].k_pack' is only valid with layout 'panels'");

  // packed_shape must agree with k_pack: the K = 1 shape is wrong for K = 2.
  json wrongPacked = m;
  wrongPacked["arguments"][2]["packed_shape"] = {8, 4, 64, 8};
  CHECK(problem(wrongPacked) ==
        "arguments[2] ('experts.{e}.w1.weight') has packed_shape [8,4,64,8], "
        "expected [8, 4, 32, 16] for panels of 8 with k_pack 2");
  json wrongForOne = one;
  wrongForOne["arguments"][2]["packed_shape"] = {8, 4, 32, 16};
  CHECK(problem(wrongForOne) ==
        "arguments[2] ('experts.{e}.w1.weight') has packed_shape "
        "[8,4,32,16], expected [8, 4, 64, 8] for panels of 8");
}
