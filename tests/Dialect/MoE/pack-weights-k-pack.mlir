// RUN: moe-opt %s --split-input-file --pass-pipeline='builtin.module(func.func(moe-pack-weights{panel=8 k-pack=2}))' | FileCheck %s

// bf16 weights with even sizes: two inputs per lane,
// [ceil(out / 8), in / 2, 16], and weight_k_pack = 2.
// CHECK-LABEL: func @bf16_pairs
// CHECK-SAME: tensor<6x32x16xbf16> {moe.k_pack = 2 : i64, moe.logical_shape = array<i64: 46, 64>, moe.panel = 8 : i64}
// CHECK-SAME: tensor<8x23x16xbf16> {moe.k_pack = 2 : i64, moe.logical_shape = array<i64: 64, 46>, moe.panel = 8 : i64}
// CHECK: moe.shared_expert {{.*}} weight_panel = 8 weight_k_pack = 2 activation_type = bf16 :
func.func @bf16_pairs(%x: tensor<?x64xf32>, %u: tensor<46x64xbf16>, %d: tensor<64x46xbf16>) -> tensor<?x64xf32> {
  %y = moe.shared_expert %x up(%u) down(%d) activation = silu activation_type = bf16
      : (tensor<?x64xf32>, tensor<46x64xbf16>, tensor<64x46xbf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// An odd input size keeps one input per lane.
// CHECK-LABEL: func @bf16_odd
// CHECK-SAME: tensor<6x64x8xbf16> {moe.logical_shape = array<i64: 45, 64>, moe.panel = 8 : i64}
// CHECK: moe.shared_expert {{.*}} weight_panel = 8 :
func.func @bf16_odd(%x: tensor<?x64xf32>, %u: tensor<45x64xbf16>, %d: tensor<64x45xbf16>) -> tensor<?x64xf32> {
  %y = moe.shared_expert %x up(%u) down(%d) activation = silu
      : (tensor<?x64xf32>, tensor<45x64xbf16>, tensor<64x45xbf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
