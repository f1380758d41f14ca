// RUN: moe-opt %s --pass-pipeline='builtin.module(gpu.module(moe-gpu-tensor-map-params))' --split-input-file --verify-diagnostics | FileCheck %s

// The leading tensor-map pointers become 128-byte by-value grid constants;
// the other parameters and functions without the attribute are untouched.
// CHECK-LABEL: gpu.module @kernels
// CHECK:       llvm.func @k(%{{.*}}: !llvm.ptr {llvm.align = 64 : i64, llvm.byval = !llvm.array<128 x i8>, nvvm.grid_constant}, %{{.*}}: !llvm.ptr {llvm.align = 64 : i64, llvm.byval = !llvm.array<128 x i8>, nvvm.grid_constant}, %{{.*}}: !llvm.ptr, %{{.*}}: i64)
// CHECK-NOT:   moe.tensor_map_params
// CHECK:       llvm.func @plain(%{{.*}}: !llvm.ptr)
gpu.module @kernels {
  llvm.func @k(%a: !llvm.ptr, %b: !llvm.ptr, %c: !llvm.ptr, %d: i64)
      attributes {nvvm.kernel, moe.tensor_map_params = 2 : i64} {
    llvm.return
  }
  llvm.func @plain(%a: !llvm.ptr) attributes {nvvm.kernel} {
    llvm.return
  }
}

// -----

gpu.module @kernels {
  // expected-error @+1 {{tensor map parameter 0 is not a pointer (convert-gpu-to-nvvm first)}}
  llvm.func @k(%a: i64) attributes {nvvm.kernel, moe.tensor_map_params = 1 : i64} {
    llvm.return
  }
}

// -----

gpu.module @kernels {
  // expected-error @+1 {{has fewer parameters than its 2 tensor maps}}
  llvm.func @k(%a: !llvm.ptr) attributes {nvvm.kernel, moe.tensor_map_params = 2 : i64} {
    llvm.return
  }
}
