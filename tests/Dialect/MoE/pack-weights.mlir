// RUN: moe-opt %s --split-input-file --pass-pipeline='builtin.module(func.func(moe-pack-weights{panel=8}))' | FileCheck %s

// Weights that are function arguments become panels [ceil(out / 8), in, 8];
// the argument records its checkpoint shape and the panel width.
// CHECK-LABEL: func @ffn
// CHECK-SAME: %[[G:[^:]*]]: tensor<8x6x64x8xf32> {moe.logical_shape = array<i64: 8, 45, 64>, moe.panel = 8 : i64}
// CHECK-SAME: %[[U:[^:]*]]: tensor<8x6x64x8xf32> {moe.logical_shape = array<i64: 8, 45, 64>, moe.panel = 8 : i64}
// CHECK-SAME: %[[D:[^:]*]]: tensor<8x8x45x8xf32> {moe.logical_shape = array<i64: 8, 64, 45>, moe.panel = 8 : i64}
// CHECK: moe.expert_ffn {{.*}} gate(%[[G]]) up(%[[U]]) down(%[[D]]) activation = silu weight_panel = 8
func.func @ffn(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
               %g: tensor<8x45x64xf32>, %u: tensor<8x45x64xf32>, %d: tensor<8x64x45xf32>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %x, %r, %t, %w gate(%g) up(%u) down(%d) activation = silu
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x45x64xf32>,
         tensor<8x45x64xf32>, tensor<8x64x45xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A weight that something else also reads stays as it is.
// CHECK-LABEL: func @shared_use
// CHECK-SAME: tensor<48x64xf32>, %{{.*}}: tensor<64x48xf32>)
// CHECK-NOT: moe.panel
// CHECK: moe.shared_expert {{.*}} activation = silu :
func.func @shared_use(%x: tensor<?x64xf32>, %u: tensor<48x64xf32>, %d: tensor<64x48xf32>)
    -> (tensor<?x64xf32>, tensor<48x64xf32>) {
  %y = moe.shared_expert %x up(%u) down(%d) activation = silu
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
  return %y, %u : tensor<?x64xf32>, tensor<48x64xf32>
}

// -----

// bf16 weights keep one input per lane unless k-pack=2.
// CHECK-LABEL: func @bf16_singles
// CHECK-SAME: tensor<6x64x8xbf16> {moe.logical_shape = array<i64: 46, 64>, moe.panel = 8 : i64}
// CHECK-NOT: weight_k_pack
func.func @bf16_singles(%x: tensor<?x64xf32>, %u: tensor<46x64xbf16>, %d: tensor<64x46xbf16>) -> tensor<?x64xf32> {
  %y = moe.shared_expert %x up(%u) down(%d) activation = silu
      : (tensor<?x64xf32>, tensor<46x64xbf16>, tensor<64x46xbf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
