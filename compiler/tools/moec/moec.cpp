//===- moec.cpp - The moec compiler driver --------------------------------===//
//
//   moec compile CONFIG -o LAYER.so [--target cpu] [--emit moe|linalg|llvm|obj]
//   moec compile CONFIG -o LAYER.so --target cuda [--gpu-mma sync|wgmma] [--emit moe|ptx]
//
// CONFIG is a Hugging Face config.json or a .mlir file in the moe dialect.
//
//===----------------------------------------------------------------------===//

#include "compiler/Conversion/MoEToGPU/PopulatePatterns.h"
#include "compiler/Frontend/HFConfig.h"
#include "compiler/Pipelines/Pipelines.h"
#include "compiler/Registration/Registration.h"
#include "compiler/Target/CPU/CPUTarget.h"
#include "compiler/Target/CUDA/CUDALayer.h"
#include "compiler/Target/CUDA/LaunchPlan.h"
#include "compiler/Target/LayerABI.h"
#include "dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/Target/TargetMachine.h"

#include <cstdlib>

using namespace mlir;
using namespace mlir::moe;
namespace cl = llvm::cl;

namespace {
enum class Emit { moe, linalg, llvm, obj, ptx, so };

cl::SubCommand compileCommand("compile",
                              "Compile an MoE block to a shared library");
cl::opt<std::string> inputPath(cl::Positional, cl::Required,
                               cl::desc("<config.json | layer.mlir>"),
                               cl::sub(compileCommand));
cl::opt<std::string> outputPath("o", cl::Required,
                                cl::desc("Output file (LAYER.so, or the "
                                         "--emit stage; '-' for stdout)"),
                                cl::value_desc("path"),
                                cl::sub(compileCommand));
cl::opt<std::string> target("target", cl::init("cpu"),
                            cl::desc("Target: cpu, or cuda (NVIDIA sm_90a)"),
                            cl::sub(compileCommand));
cl::opt<std::string> cudaPath(
    "cuda-path", cl::init(""),
    cl::desc("CUDA toolkit for --target cuda (default: $CUDA_HOME, else "
             "/usr/local/cuda)"),
    cl::value_desc("dir"), cl::sub(compileCommand));
cl::opt<std::string> gpuMma(
    "gpu-mma", cl::init("sync"),
    cl::desc("--target cuda: how the expert FFN kernels multiply: sync "
             "(mma.sync, operands from global memory) or wgmma (sm_90a "
             "warpgroup MMA on tiles TMA copies into shared memory; needs "
             "bf16 weights)"),
    cl::value_desc("sync|wgmma"), cl::sub(compileCommand));
cl::OptionCategory gpuScheduleCategory(
    "GPU schedule (tuning) options, --gpu-mma wgmma");
cl::opt<int64_t> wgmmaGateUpCols(
    "wgmma-gate-up-cols", cl::init(64),
    cl::desc("output columns of gate and up per block (8 to 128)"),
    cl::sub(compileCommand), cl::cat(gpuScheduleCategory));
cl::opt<int64_t> wgmmaDownCols(
    "wgmma-down-cols", cl::init(128),
    cl::desc("output columns of down per block (8 to 256)"),
    cl::sub(compileCommand), cl::cat(gpuScheduleCategory));
cl::opt<int64_t> wgmmaStages(
    "wgmma-stages", cl::init(4),
    cl::desc("pipeline stages of 64 inputs in shared memory (2 to 8)"),
    cl::sub(compileCommand), cl::cat(gpuScheduleCategory));
cl::opt<std::string> mcpu("mcpu", cl::init("host"),
                          cl::desc("CPU to generate code for"),
                          cl::sub(compileCommand));
cl::opt<Emit> emit(
    "emit", cl::init(Emit::so), cl::desc("Stop at a stage"),
    cl::values(clEnumValN(Emit::moe, "moe", "the moe dialect (moe.layer)"),
               clEnumValN(Emit::linalg, "linalg",
                          "bufferized loops, before the LLVM dialect"),
               clEnumValN(Emit::llvm, "llvm", "optimised LLVM IR"),
               clEnumValN(Emit::obj, "obj", "an object file"),
               clEnumValN(Emit::ptx, "ptx",
                          "the GPU kernels' PTX (--target cuda)"),
               clEnumValN(Emit::so, "so", "the shared library (default)")),
    cl::sub(compileCommand));

cl::opt<LayerSpec::WeightType> weightDtype(
    "weight-dtype", cl::init(LayerSpec::WeightType::f32),
    cl::desc("How the expert FFN weights are kept in memory (default: f32 "
             "for cpu, bf16 for cuda)"),
    cl::values(clEnumValN(LayerSpec::WeightType::f32, "f32", "float32"),
               clEnumValN(LayerSpec::WeightType::bf16, "bf16",
                          "bfloat16: half the bytes, f32 arithmetic")),
    cl::sub(compileCommand));

cl::opt<LayerSpec::WeightType> activationDtype(
    "activation-dtype", cl::init(LayerSpec::WeightType::f32),
    cl::desc("What the expert matmuls multiply activations in (default: f32 "
             "for cpu; cuda's tensor cores take bf16 only). Sets "
             "activation_type on every moe.layer of a .mlir input"),
    cl::values(clEnumValN(LayerSpec::WeightType::f32, "f32", "float32"),
               clEnumValN(LayerSpec::WeightType::bf16, "bf16",
                          "x and the hidden activations rounded to bf16; "
                          "sums in f32 (AVX-512 BF16 dot products where "
                          "the CPU has them)")),
    cl::sub(compileCommand));

cl::OptionCategory scheduleCategory("Schedule (tuning) options");
cl::opt<int64_t> vectorWidth("vector-width", cl::init(0),
                             cl::desc("f32 lanes per vector (0: from the "
                                      "CPU's features: 16 with AVX-512, else 8)"),
                             cl::sub(compileCommand), cl::cat(scheduleCategory));
cl::opt<int64_t> rowBlock("row-block", cl::init(0),
                          cl::desc("activation rows per register block "
                                   "(0: the cost model's choice)"),
                          cl::sub(compileCommand), cl::cat(scheduleCategory));
cl::opt<int64_t> pairRowBlock(
    "pair-row-block", cl::init(0),
    cl::desc("activation rows per register block over pair-packed bf16 "
             "weights (0: the cost model's choice)"),
    cl::sub(compileCommand), cl::cat(scheduleCategory));
cl::opt<int64_t> kPack("k-pack", cl::init(0),
                       cl::desc("consecutive inputs per lane of packed bf16 "
                                "expert weights: 2 (pairs, what bf16 dot "
                                "products read) or 1 (0: pairs for bf16 "
                                "activations on a CPU with AVX-512 BF16)"),
                       cl::sub(compileCommand), cl::cat(scheduleCategory));
/// --bf16-dot: BF16Dot's values, and the cost model's choice.
enum class BF16DotChoice { none, avx512, emulate, automatic };
static_assert(int(BF16DotChoice::emulate) == int(BF16Dot::emulate));
cl::opt<BF16DotChoice> bf16Dot(
    "bf16-dot", cl::init(BF16DotChoice::automatic),
    cl::desc("How bf16 activations meet bf16 weights"),
    cl::values(
        clEnumValN(BF16DotChoice::automatic, "auto",
                   "vdpbf16ps where --mcpu has AVX-512 BF16 (default)"),
        clEnumValN(BF16DotChoice::avx512, "avx512",
                   "vdpbf16ps (x86vector.avx512.dot)"),
        clEnumValN(BF16DotChoice::emulate, "emulate",
                   "vdpbf16ps's data flow with each dot product as two f32 "
                   "multiply-adds: tests that path on any CPU"),
        clEnumValN(BF16DotChoice::none, "none",
                   "widen the weights to f32 (f32 activations in memory)")),
    cl::sub(compileCommand), cl::cat(scheduleCategory));
cl::opt<int64_t> colBlock("col-block", cl::init(0),
                          cl::desc("weight rows per register block "
                                   "(0: the cost model's choice)"),
                          cl::sub(compileCommand), cl::cat(scheduleCategory));

int fail(const llvm::Twine &message) {
  llvm::errs() << "moec: error: " << message << "\n";
  return 1;
}

/// Reads CONFIG into a module holding one moe.layer.
OwningOpRef<ModuleOp> loadInput(MLIRContext &context, llvm::SourceMgr &sources) {
  std::string message;
  std::unique_ptr<llvm::MemoryBuffer> file =
      openInputFile(inputPath, &message);
  if (!file) {
    fail(message);
    return nullptr;
  }
  if (llvm::sys::path::extension(inputPath) == ".mlir") {
    sources.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
    return parseSourceFile<ModuleOp>(sources, &context);
  }
  llvm::Expected<LayerSpec> spec = parseHFConfig(file->getBuffer());
  if (!spec) {
    fail(inputPath + ": " + llvm::toString(spec.takeError()));
    return nullptr;
  }
  // The GPU keeps expert weights as bf16 (its tensor cores read bf16) unless
  // told otherwise; the CPU keeps the checkpoint's f32 unless told otherwise.
  spec->ffnWeights = weightDtype;
  if (target == "cuda" && !weightDtype.getNumOccurrences())
    spec->ffnWeights = LayerSpec::WeightType::bf16;
  // --activation-dtype: applyActivationDtype, for configs and .mlir alike.
  auto loc = FileLineColLoc::get(&context, inputPath, 1, 1);
  OwningOpRef<ModuleOp> module = buildLayerModule(&context, *spec, loc);
  if (failed(verify(*module)))
    return nullptr;
  return module;
}

/// The register blocking (the cost model: accumulators plus one weight
/// vector per panel and one broadcast must fit the register file): 16
/// vector registers (AVX2) hold 6 rows x 2 vectors, 32 (AVX-512) hold
/// 12 x 2; over pair-packed bf16 weights the widened halves and the rows'
/// broadcasts take more, so 4 (8) rows (measured: 6 rows spill on AVX2).
/// bf16 dot products where the CPU has them, and the pair layout they read
/// for bf16 activations (without them pairs measured 4-6 % slower than
/// single inputs on AVX2). Flags override.
LogicalResult chooseSchedule(llvm::TargetMachine &machine, ModuleOp module,
                             MoECPUPipelineOptions &options) {
  // The subtarget knows the features of a named --mcpu too.
  const llvm::MCSubtargetInfo &cpu = *machine.getMCSubtargetInfo();
  bool avx512 = cpu.checkFeatures("+avx512f");
  options.vectorWidth = vectorWidth ? vectorWidth : (avx512 ? 16 : 8);
  options.rowBlock = rowBlock ? rowBlock : (avx512 ? 12 : 6);
  options.colBlock = colBlock ? colBlock : 2;
  options.pairRowBlock = pairRowBlock ? pairRowBlock : (avx512 ? 8 : 4);
  bool bf16Activations = false;
  module.walk([&](LayerOp layer) {
    bf16Activations |= layer.getActivationType() &&
                       layer.getActivationType()->isBF16();
  });
  // vdpbf16ps on 16 lanes (zmm), or on 4/8 with AVX-512VL.
  int64_t lanes = options.vectorWidth;
  bool hasDot = cpu.checkFeatures("+avx512bf16") &&
                (lanes == 16 || ((lanes == 8 || lanes == 4) &&
                                 cpu.checkFeatures("+avx512vl")));
  if (bf16Dot == BF16DotChoice::avx512 && !hasDot) {
    fail("--bf16-dot avx512 needs a CPU with AVX-512 BF16 (and AVX-512VL "
         "below 16 lanes); --mcpu " + mcpu + " has none (try --mcpu "
         "sapphirerapids, or --bf16-dot emulate)");
    return failure();
  }
  options.bf16Dot = bf16Dot == BF16DotChoice::automatic
                        ? (hasDot ? BF16Dot::avx512 : BF16Dot::none)
                        : static_cast<BF16Dot>(bf16Dot.getValue());
  options.kPack =
      kPack ? kPack
            : (options.bf16Dot != BF16Dot::none && bf16Activations ? 2 : 1);
  return success();
}

/// --activation-dtype: an error where the target cannot honour it; on a
/// .mlir input, given explicitly, it sets every moe.layer's
/// activation_type.
LogicalResult applyActivationDtype(ModuleOp module) {
  bool bf16 = activationDtype == LayerSpec::WeightType::bf16;
  if (target == "cuda" && activationDtype.getNumOccurrences() && !bf16) {
    fail("--target cuda multiplies bf16 activations (its tensor cores take "
         "bf16); --activation-dtype f32 is for --target cpu");
    return failure();
  }
  if (!activationDtype.getNumOccurrences() && target != "cuda")
    return success();
  // cuda: the layer says what its kernels do (the metadata reports it).
  auto type = TypeAttr::get(Builder(module.getContext()).getBF16Type());
  module.walk([&](LayerOp layer) {
    if (bf16 || target == "cuda")
      layer.setActivationTypeAttr(type);
    else
      layer.removeActivationTypeAttr();
  });
  return success();
}

/// Writes through a temporary file so that a failure leaves no output.
int writeOutput(llvm::function_ref<void(llvm::raw_ostream &)> write) {
  std::string message;
  auto out = openOutputFile(outputPath, &message);
  if (!out)
    return fail(message);
  write(out->os());
  out->keep();
  return 0;
}

/// The CUDA toolkit --target cuda compiles with: ptxas and libdevice.
llvm::Expected<std::string> findCUDAToolkit() {
  std::string path = cudaPath;
  if (path.empty()) {
    const char *home = std::getenv("CUDA_HOME");
    path = home && *home ? home : "/usr/local/cuda";
  }
  llvm::SmallString<128> libdevice(path);
  llvm::sys::path::append(libdevice, "nvvm", "libdevice", "libdevice.10.bc");
  if (!llvm::sys::fs::exists(libdevice))
    return llvm::createStringError(
        "--target cuda: no CUDA toolkit at '" + path + "' (" +
        libdevice.str() + " is missing); install CUDA 12 or 13 or pass "
        "--cuda-path");
  return path;
}

/// Links `object` (a written-out host module) into outputPath via a
/// temporary, so that a failed link leaves nothing behind.
int linkLayer(llvm::Module &host, llvm::TargetMachine &machine) {
  llvm::SmallString<128> objectPath, libraryPath;
  if (std::error_code ec =
          llvm::sys::fs::createTemporaryFile("moec", "o", objectPath))
    return fail("cannot create a temporary file: " + ec.message());
  llvm::FileRemover removeObject(objectPath);
  {
    std::string message;
    auto out = openOutputFile(objectPath, &message);
    if (!out)
      return fail(message);
    if (llvm::Error err = emitObject(host, machine, out->os()))
      return fail(llvm::toString(std::move(err)));
    out->keep();
  }
  libraryPath = outputPath;
  libraryPath += ".tmp";
  llvm::FileRemover removeLibrary(libraryPath);
  if (llvm::Error err = linkSharedLibrary(objectPath, libraryPath))
    return fail(llvm::toString(std::move(err)));
  if (std::error_code ec = llvm::sys::fs::rename(libraryPath, outputPath))
    return fail("cannot write " + outputPath + ": " + ec.message());
  return 0;
}

/// --target cuda: the layer's kernels through gpu-module-to-binary; PTX for
/// --emit ptx, else a LAYER.so with the fatbin and the launch plan.
int compileForCUDA(ModuleOp module, func::FuncOp entry) {
  if (emit != Emit::ptx && emit != Emit::so)
    return fail("--target cuda emits moe, ptx or the LAYER.so");
  llvm::Expected<std::string> toolkit = findCUDAToolkit();
  if (!toolkit)
    return fail(llvm::toString(toolkit.takeError()));
  // The arguments as the entry function takes them: weights unpacked.
  std::string arguments = buildLayerMetadata(module, entry);

  if (gpuMma != "sync" && gpuMma != "wgmma")
    return fail("--gpu-mma must be sync or wgmma, not '" + gpuMma + "'");
  if (gpuMma == "wgmma" && weightDtype.getNumOccurrences() &&
      weightDtype == LayerSpec::WeightType::f32)
    return fail("--gpu-mma wgmma needs --weight-dtype bf16 (TMA copies the "
                "expert weights as they are)");
  bool tiled = wgmmaGateUpCols.getNumOccurrences() ||
               wgmmaDownCols.getNumOccurrences() ||
               wgmmaStages.getNumOccurrences();
  if (tiled && gpuMma != "wgmma")
    return fail("--wgmma-gate-up-cols, --wgmma-down-cols and --wgmma-stages "
                "need --gpu-mma wgmma");
  WarpgroupTiles tiles{wgmmaGateUpCols, wgmmaDownCols, wgmmaStages};
  if (std::string why = checkWarpgroupTiles(tiles); !why.empty())
    return fail(StringRef(why).starts_with("wgmma-") ? "--" + why
                                                     : "--gpu-mma wgmma: " + why);
  MoEGPUPipelineOptions options;
  options.toolkit = *toolkit;
  options.mma = gpuMma;
  options.gateUpCols = tiles.gateUpCols;
  options.downCols = tiles.downCols;
  options.stages = tiles.stages;
  options.format = emit == Emit::ptx ? "isa" : "fatbin";
  PassManager pm(module.getContext());
  buildMoEGPUKernelsPipeline(pm, options);
  if (failed(pm.run(module)))
    return fail(inputPath + ": lowering for cuda failed");
  std::string image;
  module.walk([&](gpu::BinaryOp binary) {
    for (Attribute object : binary.getObjects())
      image += cast<gpu::ObjectAttr>(object).getObject().getValue().str();
  });
  if (image.empty())
    return fail(inputPath + ": the layer has no GPU kernels");
  if (emit == Emit::ptx)
    return writeOutput([&](llvm::raw_ostream &os) { os << image; });

  llvm::Expected<llvm::json::Object> plan = buildLaunchPlan(entry);
  if (!plan)
    return fail(inputPath + ": " + llvm::toString(plan.takeError()));
  llvm::Expected<llvm::json::Value> parsed = llvm::json::parse(arguments);
  if (!parsed)
    return fail("internal error: " + llvm::toString(parsed.takeError()));
  llvm::json::Object &metadata = *parsed->getAsObject();
  // The host-side fields of a CPU layer mean nothing here.
  metadata.erase("threading");
  metadata.erase("workspace_bytes_per_thread");
  metadata["device"] = "cuda";
  // Informational: how the expert FFN kernels multiply, and their blocking.
  metadata["gpu_mma"] = gpuMma.getValue();
  if (gpuMma == "wgmma")
    metadata["wgmma_tiles"] = llvm::json::Object{
        {"gate_up_cols", tiles.gateUpCols},
        {"down_cols", tiles.downCols},
        {"stages", tiles.stages}};
  (*plan)["arch"] = options.chip.getValue();
  (*plan)["image"] = "fatbin";
  metadata["cuda"] = std::move(*plan);
  std::string json =
      llvm::formatv("{0}", llvm::json::Value(std::move(metadata)));

  auto machine = createCPUTargetMachine();
  if (!machine)
    return fail(llvm::toString(machine.takeError()));
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> host =
      buildCUDALayerModule(llvmContext, json, image, **machine);
  return linkLayer(*host, **machine);
}

int compile() {
  if (target != "cpu" && target != "cuda")
    return fail("unsupported --target '" + target +
                "' (this moec builds for: cpu, cuda)");
  if (gpuMma.getNumOccurrences() && target != "cuda")
    return fail("--gpu-mma needs --target cuda");
  if (emit == Emit::ptx && target != "cuda")
    return fail("--emit ptx needs --target cuda");
  if (kPack < 0 || kPack > 2)
    return fail("--k-pack is 1 or 2 (0: the cost model's choice), not " +
                llvm::Twine(kPack.getValue()));
  for (cl::opt<int64_t> *size : {&vectorWidth, &rowBlock, &colBlock,
                                 &pairRowBlock})
    if (*size < 0)
      return fail("--" + size->ArgStr + " must not be negative");

  DialectRegistry registry;
  registerMoECompilerDialects(registry);
  MLIRContext context(registry);
  llvm::SourceMgr sources;
  SourceMgrDiagnosticHandler diagnostics(sources, &context);

  OwningOpRef<ModuleOp> module = loadInput(context, sources);
  if (!module)
    return 1;
  llvm::Expected<func::FuncOp> entry = prepareEntryFunction(*module);
  if (!entry)
    return fail(inputPath + ": " + llvm::toString(entry.takeError()));
  if (failed(applyActivationDtype(*module)))
    return 1;
  if (target == "cuda") {
    if (emit == Emit::moe)
      return writeOutput([&](llvm::raw_ostream &os) { module->print(os); });
    return compileForCUDA(*module, *entry);
  }

  auto machine = createCPUTargetMachine(mcpu == "host" ? StringRef() : StringRef(mcpu));
  if (!machine)
    return fail(llvm::toString(machine.takeError()));
  MoECPUPipelineOptions options;
  if (failed(chooseSchedule(**machine, *module, options)))
    return 1;
  // The schedule lives in the IR: a layer without one gets the cost model's.
  auto schedule = CPUScheduleAttr::get(
      &context, options.vectorWidth, options.rowBlock, options.colBlock,
      options.streamingRows, options.pairRowBlock);
  module->walk([&](LayerOp layer) {
    if (!layer.getScheduleAttr())
      layer.setScheduleAttr(schedule);
  });

  if (emit == Emit::moe)
    return writeOutput([&](llvm::raw_ostream &os) { module->print(os); });

  // The ABI metadata describes the weights as the prepared function takes
  // them (packed into panels).
  PassManager prepare(&context);
  buildMoECPUPreparePipeline(prepare, options);
  if (failed(prepare.run(*module)))
    return fail(inputPath + ": lowering failed");
  std::string metadata = buildLayerMetadata(*module, *entry);
  eraseWeightNames(*entry);

  PassManager pm(&context);
  buildMoECPUToLoopsPipeline(pm, options);
  if (emit != Emit::linalg)
    buildMoELoopsToLLVMPipeline(pm, options);
  if (failed(pm.run(*module)))
    return fail(inputPath + ": lowering failed");
  if (emit == Emit::linalg)
    return writeOutput([&](llvm::raw_ostream &os) { module->print(os); });

  llvm::LLVMContext llvmContext;
  auto llvmModule =
      translateLayerToLLVMIR(*module, llvmContext, metadata, **machine);
  if (!llvmModule)
    return fail(inputPath + ": " + llvm::toString(llvmModule.takeError()));
  if (emit == Emit::llvm)
    return writeOutput([&](llvm::raw_ostream &os) { (*llvmModule)->print(os, nullptr); });

  if (emit == Emit::obj) {
    std::string message;
    auto out = openOutputFile(outputPath, &message);
    if (!out)
      return fail(message);
    if (llvm::Error err = emitObject(**llvmModule, **machine, out->os()))
      return fail(llvm::toString(std::move(err)));
    out->keep();
    return 0;
  }

  // LAYER.so: linked next to the output, then renamed into place.
  return linkLayer(**llvmModule, **machine);
}
} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(
      argc, argv,
      "moec: an ahead-of-time compiler for Mixture-of-Experts layers\n\n"
      "  moec compile CONFIG -o LAYER.so [--target cpu] "
      "[--emit moe|linalg|llvm|obj]\n"
      "  moec compile CONFIG -o LAYER.so --target cuda [--gpu-mma sync|wgmma] "
      "[--emit moe|ptx]\n");
  if (compileCommand)
    return compile();
  cl::PrintHelpMessage();
  return 1;
}
