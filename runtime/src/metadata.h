//===- metadata.h - The layer metadata of docs/abi.md ----------*- C++ -*-===//
//
// Parsed once at open time and checked against everything the runtime relies
// on later (roles, shapes, dtypes), so forward() needs no checks of its own.
//
//===----------------------------------------------------------------------===//

#ifndef MOERT_SRC_METADATA_H
#define MOERT_SRC_METADATA_H

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace moert {

struct CudaPlan;

/// Descriptors are built with room for this many dimensions.
constexpr size_t kMaxRank = 8;

enum class Role { Input, Weight, Output, Stats };
/// What a layer was compiled for (`"device"`, default cpu).
enum class DeviceKind { Cpu, Cuda };
/// "cpu" or "cuda", NUL-terminated.
std::string_view deviceKindName(DeviceKind kind);
enum class ElementType { F32, BF16, F16, I64 };
std::string_view elementTypeName(ElementType type);

struct ArgumentSpec {
  std::string name;
  Role role;
  ElementType dtype;
  std::vector<int64_t> shape; // logical; -1: the token dimension
  bool stacked = false;       // one checkpoint tensor per expert ({e})
  /// Weights only: > 0 for `"layout": "panels"`, where the last two
  /// dimensions [out, in] are stored as [ceil(out / P), ceil(in / K), P * K]
  /// with packed[o / P][i / K][(o % P) * K + i % K] = W[o][i] and zero
  /// padding (o >= out or i >= in); P = panel, K = kPack.
  int64_t panel = 0;
  /// `"k_pack"`: consecutive inputs per panel lane (1 or 2; 1 when absent,
  /// and always 1 without panels).
  int64_t kPack = 1;
  std::vector<int64_t> storageShape; // what the layer's descriptor gets
};

/// `shape` with its last two dimensions [out, in] packed into panels of
/// `panel` outputs and `kPack` inputs per lane: [ceil(out / panel),
/// ceil(in / kPack), panel * kPack].
std::vector<int64_t> panelShape(const std::vector<int64_t> &shape,
                                int64_t panel, int64_t kPack = 1);

struct LayerMetadata {
  uint64_t abiVersion = 0;
  std::string moecVersion; // "" when absent
  std::string family;
  int64_t hiddenSize = 0;
  int64_t numExperts = 0;
  int64_t topK = 0; // 0 when absent
  bool tokenIndependent = false;
  DeviceKind device = DeviceKind::Cpu;
  /// The layer runs its own parallel loops with LLVM's OpenMP runtime
  /// ("threading": "openmp"); the runtime then sets its thread count
  /// instead of running chunks on its own pool.
  bool openmp = false;
  uint64_t workspaceBytesPerToken = 0;
  uint64_t workspaceBytesFixed = 0;
  uint64_t workspaceBytesPerThread = 0;
  std::vector<ArgumentSpec> arguments; // in moec_forward's order
  size_t inputIndex = 0, outputIndex = 0, statsIndex = 0;
  /// Cuda layers only: the launch plan of "cuda" (cuda_plan.h).
  std::shared_ptr<const CudaPlan> cuda;
};

/// Parses and validates the JSON. Errors (MOERT_ERROR_FORMAT) start with
/// "<origin>: invalid metadata: " and name the offending field.
LayerMetadata parseLayerMetadata(std::string_view text,
                                 const std::string &origin);

} // namespace moert

#endif // MOERT_SRC_METADATA_H
