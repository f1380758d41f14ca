// RUN: moe-opt %moe_src_root/examples/mlir/mixtral_layer.mlir --moe-cpu-to-loops-pipeline | FileCheck %s --check-prefix=LOOPS
// RUN: moe-opt %moe_src_root/examples/mlir/mixtral_layer.mlir --moe-cpu-pipeline | FileCheck %s --check-prefix=LLVM

// The expert weights arrive packed into panels of 8 outputs, the outputs
// become trailing out-parameters; nothing of moe or tensors is left.
// LOOPS: func.func @moe_forward(%{{.*}}: memref<?x64xf32>, %{{.*}}: memref<8x64xf32> {moe.weight = "gate.weight"}, %{{.*}}: memref<8x6x64x8xf32> {moe.logical_shape = array<i64: 8, 48, 64>, moe.panel = 8 : i64, moe.weight = "experts.{e}.w1.weight"}, %{{.*}}: memref<8x6x64x8xf32> {{{.*}}}, %{{.*}}: memref<8x8x48x8xf32> {{{.*}}}, %{{.*}}: memref<?x64xf32>, %{{.*}}: memref<8xi64>)
// LOOPS-NOT: moe.
// LOOPS-NOT: tensor<
// LOOPS: memref.dealloc
// LOOPS: return

// The tile loops run as OpenMP worksharing loops.
// LLVM: llvm.func @moe_forward
// LLVM: omp.parallel
// LLVM: omp.wsloop
// LLVM-NOT: scf.
// LLVM-NOT: memref.
// LLVM-NOT: moe.
// LLVM: llvm.intr.exp
// LLVM: llvm.call @free
