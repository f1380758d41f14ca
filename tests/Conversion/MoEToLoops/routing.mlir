// RUN: moe-opt %s --convert-moe-to-loops --split-input-file | FileCheck %s

// Softmax router: register-blocked dot products (vector loads along the
// hidden size, one reduction per logit), then a max-subtracted exp and a
// division by the row sum.
// CHECK-LABEL: func @router_softmax
// CHECK-DAG: %[[X:.*]] = bufferization.to_buffer %{{.*}} read_only : tensor<?x64xf32> to memref<?x64xf32>
// CHECK-DAG: %[[W:.*]] = bufferization.to_buffer %{{.*}} read_only : tensor<8x64xf32> to memref<8x64xf32>
// CHECK: %[[LOGITS:.*]] = memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xf32>
// CHECK: vector.load %[[X]]
// CHECK: vector.load %[[W]]
// CHECK: vector.fma
// CHECK: vector.reduction <add>, %{{.*}} fastmath<reassoc> : vector<8xf32> into f32
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: bufferization.to_tensor %[[LOGITS]] restrict writable
func.func @router_softmax(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) -> tensor<?x8xf32> {
  %l, %s = moe.router %x, %w scoring = softmax
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return %s : tensor<?x8xf32>
}

// -----

// CHECK-LABEL: func @router_sigmoid
// CHECK: arith.negf
// CHECK: math.exp
// CHECK-NOT: arith.maximumf
func.func @router_sigmoid(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) -> tensor<?x8xf32> {
  %l, %s = moe.router %x, %w scoring = sigmoid
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return %s : tensor<?x8xf32>
}

// -----

// Plain top-k: per-token scratch on the stack, argmax by strict `>` (ties
// keep the lower index), renormalisation by the sum of the k weights.
// CHECK-LABEL: func @topk_renormalize
// CHECK-DAG: memref.alloca() {alignment = 64 : i64} : memref<8xf32>
// CHECK-DAG: memref.alloca() {alignment = 64 : i64} : memref<8xi8>
// CHECK: scf.for
// CHECK: arith.cmpf ogt
// CHECK: arith.index_cast %{{.*}} : index to i32
// CHECK: arith.divf
// CHECK-NOT: memref.alloca
func.func @topk_renormalize(%s: tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %w, %i = moe.topk %s k = 2 renormalize : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %w, %i : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// Group-limited selection with a bias: group scratch, biased selection
// scores, and a final scaling.
// CHECK-LABEL: func @topk_grouped
// CHECK-DAG: memref.alloca() {alignment = 64 : i64} : memref<4xf32>
// CHECK-DAG: memref.alloca() {alignment = 64 : i64} : memref<4xi8>
// CHECK-DAG: %[[B:.*]] = bufferization.to_buffer %{{.*}} read_only : tensor<16xf32> to memref<16xf32>
// CHECK: memref.load %[[B]]
// CHECK: arith.constant 2.500000e+00 : f32
func.func @topk_grouped(%s: tensor<?x16xf32>, %b: tensor<16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  %w, %i = moe.topk %s bias %b : tensor<16xf32> k = 4 groups = 4 topk_groups = 2
      group_score = top2_sum renormalize scaling_factor = 2.5
      : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %i : tensor<?x4xf32>, tensor<?x4xi32>
}

// -----

// Capacity: after the selection, the dispatch's phases give each slot its
// rank among its expert's slots in token order (chunk histograms, ranks per
// expert); a slot ranked at or past the capacity gets index -1 and weight 0.
// CHECK-LABEL: func @topk_capacity
// CHECK: %[[CHUNKS:.*]] = arith.ceildivui %{{.*}}, %c256 : index
// CHECK: memref.alloc(%[[CHUNKS]]) {alignment = 64 : i64} : memref<?x8xi32>
// CHECK: scf.for %{{.*}} iter_args
// CHECK: %[[CAP:.*]] = arith.constant 3 : i32
// CHECK: %[[FULL:.*]] = arith.cmpi sge, %{{.*}}, %[[CAP]] : i32
// CHECK: scf.if %[[FULL]]
// CHECK: %[[DROPPED:.*]] = arith.constant -1 : i32
// CHECK: memref.store %[[DROPPED]]
func.func @topk_capacity(%s: tensor<?x8xf32>) -> (tensor<?x1xf32>, tensor<?x1xi32>) {
  %w, %i = moe.topk %s k = 1 capacity = 3 : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return %w, %i : tensor<?x1xf32>, tensor<?x1xi32>
}

// -----

// CHECK-LABEL: func @stats
// CHECK: %[[C:.*]] = memref.alloc() {alignment = 64 : i64} : memref<8xi64>
// CHECK: linalg.fill
// CHECK: arith.cmpi sge
// CHECK: arith.addi
// CHECK: bufferization.to_tensor %[[C]]
func.func @stats(%i: tensor<?x2xi32>) -> tensor<8xi64> {
  %n = moe.stats %i : tensor<?x2xi32> -> tensor<8xi64>
  return %n : tensor<8xi64>
}

// -----

// CHECK-LABEL: func @aux_losses
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<f32>
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<f32>
// CHECK: math.log
func.func @aux_losses(%l: tensor<?x8xf32>, %i: tensor<?x2xi32>) -> (tensor<f32>, tensor<f32>) {
  %lb = moe.aux_loss load_balancing %l, %i : tensor<?x2xi32> : tensor<?x8xf32> -> tensor<f32>
  %z = moe.aux_loss z_loss %l : tensor<?x8xf32> -> tensor<f32>
  return %lb, %z : tensor<f32>, tensor<f32>
}

// -----

// A router whose scores only feed moe.topk: one parallel loop over tiles of
// 64 tokens; each tile's logits and scores live in stack scratch, and no
// [T, E] buffer is allocated.
// CHECK-LABEL: func @fused_routing
// CHECK-NOT:   memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xf32>
// CHECK:       %[[TILES:.*]] = arith.ceildivui %{{.*}}, %c64
// CHECK:       scf.parallel (%[[I:.*]]) = (%c0{{.*}}) to (%[[TILES]])
// CHECK:         %[[LOGITS:.*]] = memref.alloca() {alignment = 64 : i64} : memref<64x8xf32>
// CHECK:         %[[SCORES:.*]] = memref.alloca() {alignment = 64 : i64} : memref<64x8xf32>
// CHECK:         vector.reduction <add>
// CHECK:         memref.store %{{.*}}, %[[LOGITS]]
// CHECK:         math.exp
// CHECK:         memref.store %{{.*}}, %[[SCORES]]
// CHECK:       scf.reduce
// CHECK-NOT:   moe.
func.func @fused_routing(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>) {
  %l, %s = moe.router %x, %w scoring = softmax : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  %wt, %ix = moe.topk %s k = 2 renormalize : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %wt, %ix : tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

// When the logits are used too (an aux loss), the router keeps its [T, E]
// outputs and the selection reads them.
// CHECK-LABEL: func @unfused_routing
// CHECK:       memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xf32>
// CHECK:       memref.alloc(%{{.*}}) {alignment = 64 : i64} : memref<?x8xf32>
func.func @unfused_routing(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) -> (tensor<?x2xi32>, tensor<f32>) {
  %l, %s = moe.router %x, %w scoring = softmax : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  %wt, %ix = moe.topk %s k = 2 : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %z = moe.aux_loss z_loss %l : tensor<?x8xf32> -> tensor<f32>
  return %ix, %z : tensor<?x2xi32>, tensor<f32>
}
