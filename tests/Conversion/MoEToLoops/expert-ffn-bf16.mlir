// RUN: moe-opt %s --split-input-file --convert-moe-to-loops="row-block=2 streaming-rows=1" | FileCheck %s
// RUN: moe-opt %s --split-input-file --convert-moe-to-loops="row-block=2 streaming-rows=1 bf16-dot=avx512" | FileCheck %s --check-prefix=DOT
// RUN: moe-opt %s --split-input-file --convert-moe-to-loops="row-block=2 streaming-rows=1 bf16-dot=emulate" | FileCheck %s --check-prefix=EMULATE

// Pair-packed bf16 panels with f32 activations: each 32-bit lane is widened
// by a mask (the odd input) and a shift (the even one), and the odd product
// is added first, as vdpbf16ps does. x is read in place, not staged; without
// bf16 activations no bf16 dot product is used, even where the CPU has one.
// CHECK-LABEL: func @pairs_f32_activations
// CHECK-NOT: memref<4x64xf32>
// CHECK: scf.for %[[KK:[^ ]*]] = {{.*}} iter_args(%[[ACC:[^ ]*]] = {{.*}}) -> (vector<8xf32>
// CHECK: %[[K0:.*]] = arith.muli %[[KK]], %c2
// CHECK: %[[K1:.*]] = arith.addi %[[K0]], %c1
// CHECK: %[[LANES:.*]] = vector.bitcast %{{.*}} : vector<16xbf16> to vector<8xi32>
// CHECK: %[[ODD_BITS:.*]] = arith.andi %[[LANES]], %{{.*}} : vector<8xi32>
// CHECK: %[[ODD:.*]] = arith.bitcast %[[ODD_BITS]] : vector<8xi32> to vector<8xf32>
// CHECK: %[[EVEN_BITS:.*]] = arith.shli %[[LANES]], %{{.*}} : vector<8xi32>
// CHECK: %[[EVEN:.*]] = arith.bitcast %[[EVEN_BITS]] : vector<8xi32> to vector<8xf32>
// CHECK: %[[X1:.*]] = memref.load %{{.*}}[%{{.*}}, %[[K1]]] : memref<?x64xf32>
// CHECK: %[[A1:.*]] = vector.broadcast %[[X1]]
// CHECK: %[[SUM:.*]] = vector.fma %[[A1]], %[[ODD]], %[[ACC]] : vector<8xf32>
// CHECK: %[[X0:.*]] = memref.load %{{.*}}[%{{.*}}, %[[K0]]] : memref<?x64xf32>
// CHECK: %[[A0:.*]] = vector.broadcast %[[X0]]
// CHECK: vector.fma %[[A0]], %[[EVEN]], %[[SUM]] : vector<8xf32>
// DOT-LABEL: func @pairs_f32_activations
// DOT-NOT: x86vector
// DOT: return
func.func @pairs_f32_activations(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                                 %g: tensor<8x4x32x16xbf16>, %u: tensor<8x4x32x16xbf16>, %d: tensor<8x8x16x16xbf16>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %x, %r, %t, %w gate(%g) up(%u) down(%d) activation = silu tile_rows = 4
      weight_panel = 8 weight_k_pack = 2
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x4x32x16xbf16>,
         tensor<8x4x32x16xbf16>, tensor<8x8x16x16xbf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// bf16 activations: each tile stages its rows of x rounded to bf16
// (nearest, ties to even, by integer arithmetic; NaN stays NaN), a vector
// at a time, and rounds the hidden activations it stores. The widened
// kernel keeps them as f32; with bf16 dot products both are bf16,
// multiplied by x86vector.avx512.dot on the activation pair broadcast to
// every lane.
// CHECK-LABEL: func @pairs_bf16_activations
// CHECK: %[[HIDDEN:.*]] = memref.alloc() {{.*}} : memref<4x32xf32>
// CHECK: %[[STAGED:.*]] = memref.alloc() {{.*}} : memref<4x64xf32>
// CHECK: %[[XV:.*]] = vector.load %{{.*}} : memref<?x64xf32>, vector<8xf32>
// CHECK: %[[BITS:.*]] = arith.bitcast %[[XV]] : vector<8xf32> to vector<8xi32>
// CHECK: %[[SIXTEEN:.*]] = arith.constant dense<16> : vector<8xi32>
// CHECK: %[[SHIFTED:.*]] = arith.shrui %[[BITS]], %[[SIXTEEN]]
// CHECK: %[[LSB:.*]] = arith.andi %[[SHIFTED]], %{{.*}} : vector<8xi32>
// CHECK: %[[HALF_ULP:.*]] = arith.constant dense<32767> : vector<8xi32>
// CHECK: %[[HALF:.*]] = arith.addi %[[BITS]], %[[HALF_ULP]]
// CHECK: %[[UP:.*]] = arith.addi %[[HALF]], %[[LSB]]
// CHECK: %[[MASK:.*]] = arith.constant dense<-65536> : vector<8xi32>
// CHECK: %[[ROUNDED:.*]] = arith.andi %[[UP]], %[[MASK]]
// CHECK: %[[NAN:.*]] = arith.cmpf uno, %[[XV]], %[[XV]]
// CHECK: %[[QNAN:.*]] = arith.constant dense<2143289344> : vector<8xi32>
// CHECK: %[[KEPT:.*]] = arith.select %[[NAN]], %[[QNAN]], %[[ROUNDED]]
// CHECK: %[[F:.*]] = arith.bitcast %[[KEPT]] : vector<8xi32> to vector<8xf32>
// CHECK: vector.store %[[F]], %[[STAGED]]
// CHECK-NOT: memref.store %{{.*}}, %[[STAGED]]
// CHECK: memref.load %[[STAGED]]
// CHECK: vector.fma
// CHECK: arith.cmpf uno, %{{.*}} : vector<8xf32>
// CHECK: vector.store %{{.*}}, %[[HIDDEN]][{{.*}}] : memref<4x32xf32>, vector<8xf32>
// CHECK-NOT: x86vector
// DOT-LABEL: func @pairs_bf16_activations
// DOT: %[[HIDDEN:.*]] = memref.alloc() {{.*}} : memref<4x32xbf16>
// DOT: %[[STAGED:.*]] = memref.alloc() {{.*}} : memref<4x64xbf16>
// DOT: %[[HIGH:.*]] = arith.trunci %{{.*}} : vector<8xi32> to vector<8xi16>
// DOT: %[[B:.*]] = arith.bitcast %[[HIGH]] : vector<8xi16> to vector<8xbf16>
// DOT: vector.store %[[B]], %[[STAGED]]
// DOT: %[[W:.*]] = vector.load %{{.*}} : memref<8x4x32x16xbf16>, vector<16xbf16>
// DOT: %[[PAIR:.*]] = vector.load %[[STAGED]][{{.*}}] : memref<4x64xbf16>, vector<2xbf16>
// DOT: %[[PAIR32:.*]] = vector.bitcast %[[PAIR]] : vector<2xbf16> to vector<1xi32>
// DOT: %[[BITS:.*]] = vector.extract %[[PAIR32]][0] : i32 from vector<1xi32>
// DOT: %[[SPLAT:.*]] = vector.broadcast %[[BITS]] : i32 to vector<8xi32>
// DOT: %[[A:.*]] = vector.bitcast %[[SPLAT]] : vector<8xi32> to vector<16xbf16>
// DOT: x86vector.avx512.dot %{{.*}}, %[[A]], %[[W]] : vector<16xbf16> -> vector<8xf32>
// DOT: vector.store %{{.*}}, %[[HIDDEN]][{{.*}}] : memref<4x32xbf16>, vector<8xbf16>
// DOT: vector.load %[[HIDDEN]][{{.*}}] : memref<4x32xbf16>, vector<2xbf16>
// DOT: x86vector.avx512.dot
// DOT-NOT: vector.fma
// DOT: return
// The emulation keeps that data flow (bf16 scratch, the pair broadcast to
// every lane) and writes each dot product as two multiply-adds, odd first.
// EMULATE-LABEL: func @pairs_bf16_activations
// EMULATE: %[[HIDDEN:.*]] = memref.alloc() {{.*}} : memref<4x32xbf16>
// EMULATE: %[[STAGED:.*]] = memref.alloc() {{.*}} : memref<4x64xbf16>
// EMULATE: %[[PAIR:.*]] = vector.load %[[STAGED]][{{.*}}] : memref<4x64xbf16>, vector<2xbf16>
// EMULATE: %[[SPLAT:.*]] = vector.broadcast %{{.*}} : i32 to vector<8xi32>
// EMULATE: %[[A:.*]] = vector.bitcast %[[SPLAT]] : vector<8xi32> to vector<16xbf16>
// EMULATE: %[[A_BITS:.*]] = vector.bitcast %[[A]] : vector<16xbf16> to vector<8xi32>
// EMULATE: %[[A_ODD:.*]] = arith.bitcast %{{.*}} : vector<8xi32> to vector<8xf32>
// EMULATE: %[[A_EVEN:.*]] = arith.bitcast %{{.*}} : vector<8xi32> to vector<8xf32>
// EMULATE: %[[W_ODD:.*]] = arith.bitcast %{{.*}} : vector<8xi32> to vector<8xf32>
// EMULATE: %[[W_EVEN:.*]] = arith.bitcast %{{.*}} : vector<8xi32> to vector<8xf32>
// EMULATE: %[[SUM:.*]] = vector.fma %[[A_ODD]], %[[W_ODD]], %{{.*}} : vector<8xf32>
// EMULATE: vector.fma %[[A_EVEN]], %[[W_EVEN]], %[[SUM]] : vector<8xf32>
// EMULATE-NOT: x86vector
// EMULATE: return
func.func @pairs_bf16_activations(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                                  %g: tensor<8x4x32x16xbf16>, %u: tensor<8x4x32x16xbf16>, %d: tensor<8x8x16x16xbf16>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %x, %r, %t, %w gate(%g) up(%u) down(%d) activation = silu tile_rows = 4
      weight_panel = 8 weight_k_pack = 2 activation_type = bf16
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x4x32x16xbf16>,
         tensor<8x4x32x16xbf16>, tensor<8x8x16x16xbf16>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// bf16 activations with unpacked f32 weights (no dot products): the staged
// rows and the rounded hidden activations feed the f32 dot kernels.
// CHECK-LABEL: func @shared_bf16_activations
// CHECK: %[[HIDDEN:.*]] = memref.alloc() {{.*}} : memref<64x48xf32>
// CHECK: %[[STAGED:.*]] = memref.alloc() {{.*}} : memref<64x64xf32>
// CHECK: arith.select
// CHECK: vector.store %{{.*}}, %[[STAGED]]
// CHECK: vector.load %[[STAGED]]
// CHECK: arith.select
// CHECK: memref.store %{{.*}}, %[[HIDDEN]]
// DOT-LABEL: func @shared_bf16_activations
// DOT-NOT: x86vector
// DOT: return
func.func @shared_bf16_activations(%x: tensor<?x64xf32>, %u: tensor<48x64xf32>, %d: tensor<64x48xf32>) -> tensor<?x64xf32> {
  %y = moe.shared_expert %x up(%u) down(%d) activation = silu activation_type = bf16
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A hidden size that is not a whole number of vectors: the last 4 inputs of
// each row are staged one at a time.
// CHECK-LABEL: func @staged_tail
// CHECK: %[[STAGED:.*]] = memref.alloc() {{.*}} : memref<64x36xf32>
// CHECK: scf.for %{{.*}} = %{{.*}} to %c32 step %c8
// CHECK: vector.store %{{.*}}, %[[STAGED]]{{.*}} : memref<64x36xf32>, vector<8xf32>
// CHECK: scf.for %{{.*}} = %c32{{.*}} to %c36
// CHECK: memref.store %{{.*}}, %[[STAGED]]{{.*}} : memref<64x36xf32>
// DOT-LABEL: func @staged_tail
func.func @staged_tail(%x: tensor<?x36xf32>, %u: tensor<48x36xf32>, %d: tensor<36x48xf32>) -> tensor<?x36xf32> {
  %y = moe.shared_expert %x up(%u) down(%d) activation = silu activation_type = bf16
      : (tensor<?x36xf32>, tensor<48x36xf32>, tensor<36x48xf32>) -> tensor<?x36xf32>
  return %y : tensor<?x36xf32>
}
