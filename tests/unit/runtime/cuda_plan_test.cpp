//===- cuda_plan_test.cpp - A cuda layer's launch plan: parsing, checks --===//
//
// The "cuda" object of the metadata (docs/abi.md, "CUDA layers") through
// parseLayerMetadata: what a plan holds once parsed, how its expressions
// evaluate, the arena layout and launch limits for a T, and the exact
// message for each malformed field. No driver is involved.
//
//===----------------------------------------------------------------------===//

#include "runtime/src/cuda_plan.h"
#include "runtime/src/metadata.h"

#include "test_util.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace moert;
using namespace moert::test;
using json = nlohmann::json;

namespace {
/// A Mixtral-like layer (hidden 64, 8 experts, top 2) with a small plan.
json valid() {
  return json::parse(R"({
    "abi_version": 1, "family": "mixtral", "device": "cuda",
    "hidden_size": 64, "num_experts": 8, "top_k": 2,
    "token_independent": true,
    "workspace_bytes_per_token": 0, "workspace_bytes_fixed": 0,
    "arguments": [
      {"name": "x", "role": "input", "dtype": "f32", "shape": [-1, 64]},
      {"name": "gate.weight", "role": "weight", "dtype": "f32", "shape": [8, 64]},
      {"name": "experts.{e}.w1.weight", "role": "weight", "dtype": "bf16",
       "shape": [8, 32, 64], "stacked": true},
      {"name": "output", "role": "output", "dtype": "f32", "shape": [-1, 64]},
      {"name": "tokens_per_expert", "role": "stats", "dtype": "i64", "shape": [8]}
    ],
    "cuda": {
      "arch": "sm_90a", "image": "fatbin",
      "buffers": [
        {"dtype": "f32", "shape": ["T", 8]},
        {"dtype": "i32", "shape": [["muli", ["divui", ["addi", ["muli", "T", 2], 1016], 128], 128]]},
        {"dtype": "f32", "shape": ["T", 64]},
        {"dtype": "i64", "shape": [8]},
        {"dtype": "i8", "shape": []}
      ],
      "steps": [
        {"launch": "router", "grid": [["ceildivui", "T", 128], 1, 1],
         "block": [128, 1, 1], "args": [{"arg": 0}, {"arg": 1}, {"buffer": 0}]},
        {"launch": "ffn", "grid": [["divui", ["muli", ["divui", ["addi", ["muli", "T", 2], 1016], 128], 128], 16], 2, 1],
         "block": [32, 1, 1], "args": [{"arg": 0}, {"buffer": 1}, {"arg": 2}, {"buffer": 2}]},
        {"free": 1},
        {"launch": "router", "grid": [1, 1, 1], "block": [1, 1, 1],
         "args": [{"buffer": 3}, {"buffer": 4}]}
      ],
      "results": [{"buffer": 2}, {"buffer": 3}]
    }})");
}

std::shared_ptr<const CudaPlan> plan(const json &metadata) {
  LayerMetadata m = parseLayerMetadata(metadata.dump(), "layer.so");
  REQUIRE(m.device == DeviceKind::Cuda);
  REQUIRE(m.cuda);
  return m.cuda;
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

json without(const std::string &pointer) {
  json m = valid();
  json::json_pointer p(pointer);
  m[p.parent_pointer()].erase(p.back());
  return m;
}

/// An expression's value for T, through a one-buffer plan.
uint64_t value(const json &expr, uint64_t tokens) {
  json m = valid();
  m["cuda"]["buffers"][0]["shape"] = {expr};
  std::shared_ptr<const CudaPlan> p = plan(m);
  return p->evaluate(p->buffers[0].shape[0], tokens);
}
} // namespace

TEST_CASE("cuda plan: what a valid plan holds", "[cuda-plan]") {
  std::shared_ptr<const CudaPlan> p = plan(valid());
  CHECK(p->origin == "layer.so");
  CHECK(p->arch == "sm_90a");
  REQUIRE(p->buffers.size() == 5);
  CHECK(p->buffers[1].dtype == BufferType::I32);
  CHECK(p->buffers[4].shape.empty());
  CHECK(p->buffers[0].shape[1].constant == uint64_t(8));
  CHECK(!p->buffers[0].shape[0].constant);
  CHECK(p->buffers[1].shape[0].field == "cuda.buffers[1].shape[0]");
  REQUIRE(p->steps.size() == 4);
  CHECK(p->steps[0].kernel == "router");
  CHECK(p->steps[0].field == "cuda.steps[0]");
  CHECK(!p->steps[2].isLaunch());
  CHECK(p->steps[2].freed == 1);
  REQUIRE(p->steps[1].args.size() == 4);
  CHECK(!p->steps[1].args[2].isBuffer);
  CHECK(p->steps[1].args[2].index == 2);
  CHECK(p->steps[1].args[3].isBuffer);
  CHECK(p->results[0].index == 2);
  CHECK(p->results[1].index == 3);
  CHECK(p->kernels() == std::vector<std::string>{"router", "ffn"});

  // A cpu layer has no plan; a "cuda" object there is ignored.
  json cpu = valid();
  cpu["device"] = "cpu";
  CHECK(!parseLayerMetadata(cpu.dump(), "layer.so").cuda);
  for (const char *type : {"f32", "bf16", "f16", "i32", "i64", "i8"})
    CHECK(bufferTypeName(
              plan(with("/cuda/buffers/4/dtype", type))->buffers[4].dtype) ==
          type);
  CHECK(bufferTypeSize(BufferType::BF16) == 2);
  CHECK(bufferTypeSize(BufferType::I8) == 1);
  CHECK(bufferTypeSize(BufferType::I64) == 8);
}

TEST_CASE("cuda plan: expressions in unsigned 64-bit arithmetic",
          "[cuda-plan]") {
  CHECK(value(42, 7) == 42);
  CHECK(value("T", 7) == 7);
  CHECK(value(json::array({"addi", "T", 3}), 7) == 10);
  CHECK(value(json::array({"subi", "T", 3}), 7) == 4);
  CHECK(value(json::array({"subi", "T", 8}), 7) == UINT64_MAX); // wraps
  CHECK(value(json::array({"addi", "T", -1}), 7) == 6); // -1 is 2^64 - 1
  CHECK(value(json::array({"muli", "T", 5}), 7) == 35);
  CHECK(value(json::array({"divui", "T", 2}), 7) == 3);
  CHECK(value(json::array({"ceildivui", "T", 2}), 7) == 4);
  CHECK(value(json::array({"ceildivui", "T", 7}), 7) == 1);
  CHECK(value(json::array({"ceildivui", 0, 7}), 7) == 0);
  CHECK(value(json::array({"remui", "T", 4}), 7) == 3);
  CHECK(value(json::array({"minui", "T", 4}), 7) == 4);
  CHECK(value(json::array({"maxui", "T", 4}), 7) == 7);
  CHECK(value(json::array({"maxui", -1, 4}), 7) == UINT64_MAX);
  CHECK(value(uint64_t(UINT64_MAX), 7) == UINT64_MAX);
  // R_max = floor((T k + E (tile - 1)) / tile) tile, tile 128.
  json rMax = json::parse(
      R"(["muli", ["divui", ["addi", ["muli", "T", 2], 1016], 128], 128])");
  for (uint64_t t : {1, 7, 300, 100000})
    CHECK(value(rMax, t) == (t * 2 + 8 * 127) / 128 * 128);
  // Constants are folded at parse time.
  json m = valid();
  m["cuda"]["buffers"][0]["shape"] = {
      json::parse(R"(["muli", 3, ["addi", 1, 1]])")};
  CHECK(plan(m)->buffers[0].shape[0].constant == uint64_t(6));

  // Division by a zero that depends on T: an error at evaluation time.
  json zero = valid();
  zero["cuda"]["buffers"][0]["shape"] = {
      json::parse(R"(["divui", 8, ["subi", "T", 1]])")};
  std::shared_ptr<const CudaPlan> p = plan(zero);
  CHECK(p->evaluate(p->buffers[0].shape[0], 3) == 4);
  Failure f = failureOf([&] { p->evaluate(p->buffers[0].shape[0], 1); });
  CHECK(f.status == MOERT_ERROR_FORMAT);
  CHECK(f.message == "layer.so: invalid metadata: 'cuda.buffers[0].shape[0]' "
                     "divides by zero for T = 1");
}

TEST_CASE("cuda plan: the arena layout and launch sizes for a T",
          "[cuda-plan]") {
  LayerMetadata m = parseLayerMetadata(valid().dump(), "layer.so");
  const CudaPlan &p = *m.cuda;
  PlanLayout l = p.layout(m, 7);
  CHECK(l.tokens == 7);
  CHECK(l.inputOffset == 0);
  // x: 7 * 64 * 4 = 1792 bytes; then each buffer on 256 bytes: [7, 8] f32
  // (224), R_max = 1024 i32 (4096), [7, 64] f32 (1792), [8] i64 (64), a
  // rank-0 i8 (1).
  CHECK(l.offsets == std::vector<uint64_t>{1792, 2048, 6144, 7936, 8192});
  CHECK(l.shapes[0] == std::vector<int64_t>{7, 8});
  CHECK(l.shapes[1] == std::vector<int64_t>{1024});
  CHECK(l.shapes[4].empty());
  CHECK(l.bytes == 8448);
  for (uint64_t offset : l.offsets)
    CHECK(offset % kPlanBufferAlignment == 0);

  LaunchDims d = p.launchDims(p.steps[1], 300);
  CHECK(d.grid[0] == (300 * 2 + 1016) / 128 * 128 / 16);
  CHECK(d.grid[1] == 2);
  CHECK(d.block[0] == 32);
  CHECK(p.launchDims(p.steps[0], 129).grid[0] == 2);

  // Launch limits that depend on T name the step and T.
  json big =
      with("/cuda/steps/0/grid/1", json::parse(R"(["muli", "T", 1000])"));
  LayerMetadata b = parseLayerMetadata(big.dump(), "layer.so");
  CHECK(b.cuda->launchDims(b.cuda->steps[0], 65).grid[1] == 65000);
  Failure f = failureOf([&] { b.cuda->launchDims(b.cuda->steps[0], 66); });
  CHECK(f.status == MOERT_ERROR_INVALID_ARGUMENT);
  CHECK(f.message == "layer.so: cuda.steps[0] ('router') for T = 66: grid "
                     "[1, 66000, 1] is outside CUDA's limits (x in [1, "
                     "2147483647], y and z in [1, 65535])");
  json zero = with("/cuda/steps/0/grid/0", json::parse(R"(["subi", "T", 1])"));
  LayerMetadata z = parseLayerMetadata(zero.dump(), "layer.so");
  CHECK(failureOf([&] { z.cuda->launchDims(z.cuda->steps[0], 1); }).message ==
        "layer.so: cuda.steps[0] ('router') for T = 1: grid [0, 1, 1] is "
        "outside CUDA's limits (x in [1, 2147483647], y and z in [1, 65535])");
  json threads = with("/cuda/steps/0/block/1", "T");
  LayerMetadata t = parseLayerMetadata(threads.dump(), "layer.so");
  CHECK(t.cuda->launchDims(t.cuda->steps[0], 8).block[1] == 8);
  CHECK(failureOf([&] { t.cuda->launchDims(t.cuda->steps[0], 9); }).message ==
        "layer.so: cuda.steps[0] ('router') for T = 9: block [128, 9, 1] is "
        "outside CUDA's limits (each dimension at least 1, z at most 64, at "
        "most 1024 threads)");

  // Results whose shapes do not fit the output or the statistics.
  json narrow = with("/cuda/buffers/2/shape", json::parse(R"(["T", 60])"));
  LayerMetadata n = parseLayerMetadata(narrow.dump(), "layer.so");
  Failure shape = failureOf([&] { n.cuda->layout(n, 7); });
  CHECK(shape.status == MOERT_ERROR_FORMAT);
  CHECK(shape.message == "layer.so: invalid metadata: cuda.results[0] (buffer "
                         "2) has shape [7, 60] for T = 7, expected [7, 64]");
  json stats = with("/cuda/buffers/3/shape", json::parse(R"(["T"])"));
  LayerMetadata s = parseLayerMetadata(stats.dump(), "layer.so");
  CHECK_NOTHROW(s.cuda->layout(s, 8));
  CHECK(failureOf([&] { s.cuda->layout(s, 7); }).message ==
        "layer.so: invalid metadata: cuda.results[1] (buffer 3) has shape "
        "[7] for T = 7, expected [8]");

  // Sizes beyond 64 bits.
  json huge = with("/cuda/buffers/0/shape", json::parse(R"(["T", -1])"));
  LayerMetadata h = parseLayerMetadata(huge.dump(), "layer.so");
  Failure over = failureOf([&] { h.cuda->layout(h, 7); });
  CHECK(over.status == MOERT_ERROR_INVALID_ARGUMENT);
  CHECK(over.message == "layer.so: 'cuda.buffers[0].shape[1]' is "
                        "18446744073709551615 for T = 7, beyond the sizes a "
                        "buffer can have");
  json wide = with("/cuda/buffers/0/shape",
                   json::parse(R"(["T", 4611686018427387904])"));
  LayerMetadata w = parseLayerMetadata(wide.dump(), "layer.so");
  CHECK(failureOf([&] { w.cuda->layout(w, 7); }).message ==
        "layer.so: cuda.buffers[0] [7, 4611686018427387904] does not fit in "
        "64-bit memory for T = 7");
}

TEST_CASE("cuda plan: every malformed field is named", "[cuda-plan]") {
  CHECK(problem(without("/cuda")) ==
        "missing field 'cuda' (a cuda layer needs its launch plan)");
  CHECK(problem(with("/cuda", 1)) == "field 'cuda' must be an object");
  CHECK(problem(without("/cuda/arch")) == "missing field 'cuda.arch'");
  CHECK(problem(with("/cuda/arch", "")) ==
        "field 'cuda.arch' must be a non-empty string");
  for (const char *bad :
       {"sm90a", "sm_9", "sm_09", "sm_9x", "sm_1000", "compute_90"})
    CHECK(problem(with("/cuda/arch", bad)) ==
          "field 'cuda.arch' is '" + std::string(bad) +
              "', expected a CUDA architecture such as sm_90a");
  CHECK(plan(with("/cuda/arch", "sm_100a"))->arch == "sm_100a");
  CHECK(problem(with("/cuda/image", "cubin")) ==
        "field 'cuda.image' is 'cubin'; this runtime loads only 'fatbin'");
  CHECK(problem(without("/cuda/image")) == "missing field 'cuda.image'");

  // Buffers.
  CHECK(problem(with("/cuda/buffers", json::object())) ==
        "field 'cuda.buffers' must be a list");
  CHECK(problem(with("/cuda/buffers/1", 3)) ==
        "'cuda.buffers[1]' must be an object");
  CHECK(problem(with("/cuda/buffers/1/dtype", "u8")) ==
        "field 'cuda.buffers[1].dtype' is \"u8\", expected f32, bf16, f16, "
        "i32, i64 or i8");
  CHECK(problem(without("/cuda/buffers/1/shape")) ==
        "missing field 'cuda.buffers[1].shape'");
  CHECK(problem(with("/cuda/buffers/1/shape",
                     json::array({1, 1, 1, 1, 1, 1, 1, 1, 1}))) ==
        "field 'cuda.buffers[1].shape' must be a list of at most 8 "
        "expressions");

  // Expressions.
  CHECK(problem(with("/cuda/buffers/0/shape/0", "N")) ==
        "'cuda.buffers[0].shape[0]' is \"N\", expected an integer, \"T\" or "
        "[op, e, e]");
  CHECK(problem(with("/cuda/buffers/0/shape/0", 1.5)) ==
        "'cuda.buffers[0].shape[0]' is 1.5, expected an integer, \"T\" or "
        "[op, e, e]");
  CHECK(problem(with("/cuda/buffers/0/shape/0", json::array({"addi", "T"}))) ==
        "'cuda.buffers[0].shape[0]' has 2 elements, expected [op, e, e]");
  CHECK(problem(with("/cuda/buffers/1/shape/0/1/0", "divsi")) ==
        "'cuda.buffers[1].shape[0][1][0]' is \"divsi\", expected one of addi, "
        "subi, muli, divui, ceildivui, remui, minui, maxui");
  CHECK(problem(with("/cuda/buffers/1/shape/0/1/2", 0)) ==
        "'cuda.buffers[1].shape[0][1]' divides by zero");
  CHECK(problem(
            with("/cuda/steps/0/grid/0/2", json::parse(R"(["subi", 3, 3])"))) ==
        "'cuda.steps[0].grid[0]' divides by zero");
  json deep = "T";
  for (int i = 0; i < 70; ++i)
    deep = json::array({"addi", deep, 1});
  std::string deepest = "cuda.buffers[0].shape[0]";
  for (int i = 0; i < 65; ++i)
    deepest += "[1]";
  CHECK(problem(with("/cuda/buffers/0/shape/0", deep)) ==
        "'" + deepest + "' is nested more than 64 levels deep");

  // Steps.
  CHECK(problem(with("/cuda/steps", 1)) == "field 'cuda.steps' must be a list");
  CHECK(problem(with("/cuda/steps/1", "ffn")) ==
        "'cuda.steps[1]' must be an object");
  CHECK(problem(with("/cuda/steps/2/launch", "k")) ==
        "'cuda.steps[2]' must have either a 'launch' or a 'free' field");
  CHECK(problem(with("/cuda/steps/2", json::object())) ==
        "'cuda.steps[2]' must have either a 'launch' or a 'free' field");
  CHECK(problem(with("/cuda/steps/0/launch", "")) ==
        "field 'cuda.steps[0].launch' must be a non-empty kernel name");
  CHECK(problem(with("/cuda/steps/0/launch", 7)) ==
        "field 'cuda.steps[0].launch' must be a non-empty kernel name");
  CHECK(problem(without("/cuda/steps/0/grid")) ==
        "missing field 'cuda.steps[0].grid'");
  CHECK(problem(with("/cuda/steps/0/block", json::array({1, 1}))) ==
        "field 'cuda.steps[0].block' must be a list of 3 expressions");
  CHECK(problem(without("/cuda/steps/1/args")) ==
        "missing field 'cuda.steps[1].args'");
  CHECK(problem(with("/cuda/steps/1/args", json::object())) ==
        "field 'cuda.steps[1].args' must be a list");
  CHECK(
      problem(with("/cuda/steps/1/args/1", json::parse(R"({"buffer": 12})"))) ==
      "cuda.steps[1].args[1] refers to buffer 12 of 5");
  CHECK(problem(with("/cuda/steps/1/args/1", json::parse(R"({"arg": 5})"))) ==
        "cuda.steps[1].args[1] refers to argument 5 of 5");
  CHECK(problem(with("/cuda/steps/1/args/1", json::parse(R"({"arg": 3})"))) ==
        "cuda.steps[1].args[1] refers to argument 3 ('output'), which is "
        "neither the input nor a weight");
  CHECK(
      problem(with("/cuda/steps/1/args/1", json::parse(R"({"buffer": -1})"))) ==
      "field 'cuda.steps[1].args[1].buffer' must be an integer >= 0, found "
      "-1");
  CHECK(problem(with("/cuda/steps/1/args/1",
                     json::parse(R"({"buffer": 1, "arg": 0})"))) ==
        "'cuda.steps[1].args[1]' must be {\"arg\": i} or {\"buffer\": n}, "
        "found {\"arg\":0,\"buffer\":1}");
  CHECK(problem(with("/cuda/steps/2/free", 5)) ==
        "cuda.steps[2] frees buffer 5 of 5");
  CHECK(problem(with("/cuda/steps/2/free", "1")) ==
        "field 'cuda.steps[2].free' must be an integer >= 0, found \"1\"");
  // Constant launch sizes beyond CUDA's limits fail at open already.
  CHECK(problem(with("/cuda/steps/0/block/0", 2048)) ==
        "cuda.steps[0] ('router'): block [2048, 1, 1] is outside CUDA's "
        "limits (each dimension at least 1, z at most 64, at most 1024 "
        "threads)");
  CHECK(problem(with("/cuda/steps/0/block/1", 16)) ==
        "cuda.steps[0] ('router'): block [128, 16, 1] is outside CUDA's "
        "limits (each dimension at least 1, z at most 64, at most 1024 "
        "threads)");
  CHECK(problem(with("/cuda/steps/3/block/2", 65)) ==
        "cuda.steps[3] ('router'): block [1, 1, 65] is outside CUDA's limits "
        "(each dimension at least 1, z at most 64, at most 1024 threads)");
  CHECK(problem(with("/cuda/steps/3/grid/2", 0)) ==
        "cuda.steps[3] ('router'): grid [1, 1, 0] is outside CUDA's limits "
        "(x in [1, 2147483647], y and z in [1, 65535])");
  CHECK(problem(with("/cuda/steps/0/grid/1", 65536)) ==
        "cuda.steps[0] ('router'): grid [?, 65536, 1] is outside CUDA's "
        "limits (x in [1, 2147483647], y and z in [1, 65535])");

  // Results.
  CHECK(problem(without("/cuda/results")) == "missing field 'cuda.results'");
  CHECK(problem(with("/cuda/results", json::parse(R"([{"buffer": 2}])"))) ==
        "field 'cuda.results' must be a list of 2 buffer references (the "
        "output, then the statistics)");
  CHECK(problem(with("/cuda/results/0", json::parse(R"({"arg": 0})"))) ==
        "cuda.results[0] must be {\"buffer\": n}, found {\"arg\":0}");
  CHECK(problem(with("/cuda/results/1", json::parse(R"({"buffer": 9})"))) ==
        "cuda.results[1] refers to buffer 9 of 5");
  CHECK(problem(with("/cuda/results/0", json::parse(R"({"buffer": 1})"))) ==
        "cuda.results[0] is buffer 1, i32 with 1 dimension; the output must "
        "be f32 with 2 dimensions");
  CHECK(problem(with("/cuda/results/1", json::parse(R"({"buffer": 0})"))) ==
        "cuda.results[1] is buffer 0, f32 with 2 dimensions; the statistics "
        "must be i64 with 1 dimension");

  // A cuda layer's weights are never packed.
  json panels = valid();
  panels["arguments"][2]["layout"] = "panels";
  panels["arguments"][2]["panel"] = 8;
  CHECK(problem(panels) == "argument 'experts.{e}.w1.weight' has layout "
                           "'panels'; a cuda layer's weights are never packed");
}

TEST_CASE("cuda plan: tensor map arguments and dynamic shared memory",
          "[cuda-plan]") {
  // The ffn step as --gpu-mma wgmma launches it: maps of a bf16 buffer
  // [rows, 32] and of the stacked bf16 weights [8, 32, 64].
  json m = valid();
  m["cuda"]["buffers"][4] = {{"dtype", "bf16"}, {"shape", {"T", 32}}};
  json &ffn = m["cuda"]["steps"][1];
  ffn["args"] = json::parse(R"([
      {"tensor_map": {"buffer": 4}, "box": [64, 32]},
      {"tensor_map": {"arg": 2}, "box": [1, 64, 64]},
      {"buffer": 1}, {"buffer": 2}])");
  ffn["shared_bytes"] = 98336;
  std::shared_ptr<const CudaPlan> p = plan(m);
  const PlanStep &step = p->steps[1];
  CHECK(step.sharedBytes == 98336);
  CHECK(p->steps[0].sharedBytes == 0);
  REQUIRE(step.args.size() == 4);
  CHECK(step.args[0].isTensorMap);
  CHECK(step.args[0].isBuffer);
  CHECK(step.args[0].index == 4);
  CHECK(step.args[0].box == std::vector<uint32_t>{64, 32});
  CHECK(step.args[1].isTensorMap);
  CHECK(!step.args[1].isBuffer);
  CHECK(step.args[1].box == std::vector<uint32_t>{1, 64, 64});
  CHECK(!step.args[2].isTensorMap);

  auto edited = [&](const std::string &pointer, json value) {
    json e = m;
    e[json::json_pointer(pointer)] = std::move(value);
    return e;
  };
  const std::string arg0 = "cuda.steps[1].args[0]";
  CHECK(problem(edited("/cuda/steps/1/args/0/box", {64})) ==
        "field '" + arg0 + ".box' must be a list of 2 sizes (the tensor's rank)");
  CHECK(problem(edited("/cuda/steps/1/args/0/box/0", 0)) ==
        "field '" + arg0 + ".box[0]' is 0, outside 1..256");
  CHECK(problem(edited("/cuda/steps/1/args/0/box/0", 257)) ==
        "field '" + arg0 + ".box[0]' is 257, outside 1..256");
  CHECK(problem(edited("/cuda/steps/1/args/0/box/1", 128)) ==
        arg0 + ": boxes of 128 bf16 per row; the 128-byte swizzle takes a "
               "multiple of 8, at most 64");
  CHECK(problem(edited("/cuda/steps/1/args/0/box/1", 12)) ==
        arg0 + ": boxes of 12 bf16 per row; the 128-byte swizzle takes a "
               "multiple of 8, at most 64");
  CHECK(problem(edited("/cuda/buffers/4/shape/1", 36)) ==
        arg0 + ": rows of 36 bf16 are not a whole number of 16 bytes, which "
               "TMA needs");
  CHECK(problem(edited("/cuda/buffers/4/dtype", "f32")) ==
        arg0 + " is a tensor map of a tensor that is not bf16");
  CHECK(problem(edited("/cuda/steps/1/args/0/tensor_map", {{"arg", 1}})) ==
        arg0 + " is a tensor map of a tensor that is not bf16");
  CHECK(problem(edited("/cuda/steps/1/args/0/tensor_map", {{"buffer", 9}})) ==
        arg0 + ".tensor_map refers to buffer 9 of 5");
  CHECK(problem(edited("/cuda/steps/1/args/0",
                       {{"tensor_map", {{"buffer", 4}}}})) ==
        "'" + arg0 +
            "' must be {\"tensor_map\": ref, \"box\": [sizes]}, found "
            "{\"tensor_map\":{\"buffer\":4}}");
  CHECK(problem(edited("/cuda/steps/1/shared_bytes", -1)) ==
        "field 'cuda.steps[1].shared_bytes' must be an integer >= 0, found -1");
  CHECK(problem(edited("/cuda/steps/1/shared_bytes", 2000000)) ==
        "field 'cuda.steps[1].shared_bytes' is 2000000, more than 1048576");
}
