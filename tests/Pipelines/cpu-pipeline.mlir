// RUN: moe-opt %moe_src_root/examples/mlir/mixtral_layer.mlir --moe-cpu-to-loops-pipeline | FileCheck %s --check-prefix=LOOPS
// RUN: moe-opt %moe_src_root/examples/mlir/mixtral_layer.mlir --moe-cpu-pipeline | FileCheck %s --check-prefix=LLVM

// The outputs become trailing out-parameters; nothing of moe or tensors is left.
// LOOPS: func.func @moe_forward(%{{.*}}: memref<?x64xf32>, %{{.*}}: memref<8x64xf32>, %{{.*}}: memref<8x32x64xf32>, %{{.*}}: memref<8x32x64xf32>, %{{.*}}: memref<8x64x32xf32>, %{{.*}}: memref<?x64xf32>, %{{.*}}: memref<8xi64>)
// LOOPS-NOT: moe.
// LOOPS-NOT: tensor<
// LOOPS: memref.dealloc
// LOOPS: return

// LLVM: llvm.func @moe_forward
// LLVM-NOT: scf.
// LLVM-NOT: memref.
// LLVM-NOT: moe.
// LLVM: llvm.intr.exp
// LLVM: llvm.call @free
