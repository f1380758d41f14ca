// RUN: moe-opt %s --convert-moe-to-loops | FileCheck %s

// The counting sort in phases: a histogram per chunk of 256 slots, ranks
// per expert (exclusive sums over the chunks, totals into
// expert_offsets[e + 1]), the padded scan, then the row count sizes the
// plan's buffers (padding rows hold -1), the tile table per expert and the
// scatter per chunk.
// CHECK-LABEL: func @dispatch
// CHECK: %[[CHUNKS:.*]] = arith.ceildivui %{{.*}}, %c256 : index
// CHECK: %[[COUNTS:.*]] = memref.alloc(%[[CHUNKS]]) {alignment = 64 : i64} : memref<?x8xi32>
// CHECK: scf.for %[[C:.*]] = %{{.*}} to %[[CHUNKS]]
// CHECK: memref.store %{{.*}}, %[[COUNTS]][%[[C]], %{{.*}}] : memref<?x8xi32>
// CHECK: %[[OFFSETS:.*]] = memref.alloc() {alignment = 64 : i64} : memref<9xi32>
// CHECK: scf.for %{{.*}} iter_args(%{{.*}} = %{{.*}}) -> (i32)
// CHECK: %[[TILE:.*]] = arith.constant 4 : i32
// CHECK: arith.divui %{{.*}}, %[[TILE]] : i32
// CHECK: %[[ROWS:.*]] = arith.index_cast %{{.*}} : i32 to index
// CHECK: %[[SORTED:.*]] = memref.alloc(%[[ROWS]]) {alignment = 64 : i64} : memref<?xi32>
// CHECK: linalg.fill ins(%{{.*}} : i32) outs(%[[SORTED]] : memref<?xi32>)
// CHECK: scf.for %{{.*}} = %{{.*}} to %[[CHUNKS]]
// CHECK: memref.store %{{.*}}, %[[SORTED]]
func.func @dispatch(%i: tensor<?x2xi32>) -> (tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>) {
  %r, %s, %o, %t = moe.dispatch %i experts = 8 tile_rows = 4
      : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>
  return %r, %s, %o, %t : tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>
}

// One parallel loop over tiles. Per tile (with its own scratch): the used
// rows' tokens and routing weights, zeroed padding rows, then the gate/up
// dot-product kernel (vector loads along the hidden size, one reduction per
// output) and the down projection scaled by the routing weight.
// CHECK-LABEL: func @expert_ffn
// CHECK: scf.parallel
// CHECK-DAG: %[[TOKENS:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4xindex>
// CHECK-DAG: %[[SCALE:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
// CHECK-DAG: %[[HIDDEN:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4x32xf32>
// CHECK: arith.divui
// CHECK: arith.remui
// CHECK: vector.load %{{.*}} : memref<?x64xf32>, vector<8xf32>
// CHECK: vector.fma
// CHECK: vector.reduction <add>
// CHECK: math.exp
// CHECK: memref.store %{{.*}}, %[[HIDDEN]]
// CHECK: memref.load %[[SCALE]]
func.func @expert_ffn(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                      %g: tensor<8x32x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %x, %r, %t, %w gate(%g) up(%u) down(%d) activation = silu tile_rows = 4
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>,
         tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// The sigmoid gate first, then the FFN with the exact (erf) GELU.
// CHECK-LABEL: func @shared_expert_gelu
// CHECK: arith.negf
// CHECK: math.exp
// CHECK: math.erf
func.func @shared_expert_gelu(%x: tensor<?x64xf32>, %u: tensor<48x64xf32>, %d: tensor<64x48xf32>,
                              %g: tensor<1x64xf32>) -> tensor<?x64xf32> {
  %y = moe.shared_expert %x up(%u) down(%d) expert_gate(%g) activation = gelu
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// Combine starts from the addend and adds the k rows in choice order,
// skipping dropped slots (row -1).
// CHECK-LABEL: func @combine
// CHECK-SAME: (%{{.*}}: tensor<?x64xf32>, %{{.*}}: tensor<?x2xi32>, %[[A:.*]]: tensor<?x64xf32>)
// CHECK: %[[ADD:.*]] = bufferization.to_buffer %[[A]]
// CHECK: scf.for %[[T:.*]] =
// CHECK: memref.load %[[ADD]][%[[T]],
// CHECK: arith.cmpi sge
// CHECK: scf.if
func.func @combine(%rows: tensor<?x64xf32>, %sr: tensor<?x2xi32>, %a: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %y = moe.combine %rows, %sr add %a : tensor<?x64xf32> : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// Packed weights: one panel vector per k, the activation broadcast, no
// reductions; the hidden activations are stored a vector at a time.
// CHECK-LABEL: func @expert_ffn_packed
// CHECK: scf.parallel
// CHECK: memref.alloc() {alignment = 64 : i64} : memref<4x48xf32>
// CHECK: vector.load %{{.*}} : memref<8x6x64x8xf32>, vector<8xf32>
// CHECK: vector.broadcast %{{.*}} : f32 to vector<8xf32>
// CHECK: vector.fma
// CHECK-NOT: vector.reduction
// CHECK: vector.store %{{.*}} : memref<4x48xf32>, vector<8xf32>
func.func @expert_ffn_packed(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                             %g: tensor<8x6x64x8xf32>, %u: tensor<8x6x64x8xf32>,
                             %d: tensor<8x8x45x8xf32>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %x, %r, %t, %w gate(%g) up(%u) down(%d) activation = silu tile_rows = 4
      weight_panel = 8
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x6x64x8xf32>,
         tensor<8x6x64x8xf32>, tensor<8x8x45x8xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// An op's #moe.cpu_schedule overrides the pass options: 16-lane vectors.
// CHECK-LABEL: func @expert_ffn_scheduled
// CHECK: vector.load %{{.*}} : memref<8x3x64x16xf32>, vector<16xf32>
// CHECK: vector.broadcast %{{.*}} : f32 to vector<16xf32>
func.func @expert_ffn_scheduled(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                                %u: tensor<8x3x64x16xf32>, %d: tensor<8x4x45x16xf32>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %x, %r, %t, %w up(%u) down(%d) activation = relu tile_rows = 4
      weight_panel = 16 {schedule = #moe.cpu_schedule<vector_width = 16, row_block = 4>}
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x3x64x16xf32>,
         tensor<8x4x45x16xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
