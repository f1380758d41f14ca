// RUN: moe-opt %s --moe-decompose-layer --convert-moe-to-gpu --split-input-file --verify-diagnostics | FileCheck %s

// A whole layer on the GPU: every primitive a launch, every result a device
// buffer, nothing read back on the host. The dispatch plan is sized for the
// most rows any routing needs: R_max = floor((T k + E (tile - 1)) / tile) * tile.

// CHECK-LABEL: func.func @qwen2
// CHECK:       %[[T:.*]] = memref.dim %{{.*}}, %c0 : memref<?x64xf32>
// The router's logits a block per 64 tokens x 64 experts; the softmax and
// the selection in one kernel, a thread per token (nothing else reads the
// scores, so they never reach memory).
// CHECK:       %[[LOGITS:.*]] = gpu.alloc  (%[[T]]) : memref<?x8xf32>
// CHECK:       %[[TILES_T:.*]] = arith.ceildivui %[[T]], %c64{{[_0-9]*}} : index
// CHECK:       gpu.launch_func  @moe_kernels::@router_logits blocks in (%[[TILES_T]], %c1{{[_0-9]*}}, %c1{{[_0-9]*}}) threads in (%c256
// CHECK-SAME:    args({{.*}} : memref<?x64xf32>, {{.*}} : memref<8x64xf32>, %[[LOGITS]] : memref<?x8xf32>)
// CHECK-NOT:   @router_softmax(
// CHECK:       gpu.launch_func  @moe_kernels::@router_softmax_topk {{.*}} args(%[[LOGITS]] : memref<?x8xf32>,
// CHECK:       gpu.dealloc  %[[LOGITS]]
// CHECK:       %[[SLOTS:.*]] = arith.muli %{{.*}}, %c2{{[_0-9]*}} : index
// CHECK:       %[[PADDED:.*]] = arith.addi %[[SLOTS]], %c1016 : index
// CHECK:       %[[TILES:.*]] = arith.divui %[[PADDED]], %c128{{[_0-9]*}} : index
// CHECK:       %[[RMAX:.*]] = arith.muli %[[TILES]], %c128{{[_0-9]*}} : index
// The sort in three kernels: a histogram per chunk of 256 slots (a thread
// each), the ranks, offsets and tile table in one block, the scatter per
// chunk; the chunk counts are scratch.
// CHECK:       %[[CHUNKS:.*]] = arith.ceildivui %{{.*}}, %c256{{[_0-9]*}} : index
// CHECK:       %[[COUNTS:.*]] = gpu.alloc  (%[[CHUNKS]]) : memref<?x8xi32>
// CHECK:       gpu.alloc  () : memref<9xi32>
// CHECK:       gpu.alloc  (%[[RMAX]]) : memref<?xi32>
// CHECK:       gpu.alloc  (%[[TILES]]) : memref<?xi32>
// CHECK:       %[[BLOCKS:.*]] = arith.ceildivui %[[CHUNKS]], %c128{{[_0-9]*}} : index
// CHECK:       gpu.launch_func  @moe_kernels::@dispatch_histogram blocks in (%[[BLOCKS]], %c1{{[_0-9]*}}, %c1{{[_0-9]*}}) threads in (%c128
// CHECK:       gpu.launch_func  @moe_kernels::@dispatch_offsets blocks in (%c1{{[_0-9]*}}, %c1{{[_0-9]*}}, %c1{{[_0-9]*}}) threads in (%c256
// CHECK:       gpu.launch_func  @moe_kernels::@dispatch_scatter blocks in (%[[BLOCKS]],
// CHECK:       gpu.dealloc  %[[COUNTS]]
// CHECK:       gpu.launch_func  @moe_kernels::@expert_ffn_gate_up
// CHECK:       gpu.launch_func  @moe_kernels::@expert_ffn_down
// The shared expert: one row per token, padded to 16.
// CHECK:       arith.ceildivui %{{.*}}, %c16
// CHECK:       gpu.launch_func  @moe_kernels::@shared_ffn_gate_up
// CHECK:       gpu.launch_func  @moe_kernels::@shared_ffn_down
// CHECK-SAME:    memref<1x64xf32>
// The combine: a block per token (x) and per 128 columns (y).
// CHECK:       gpu.launch_func  @moe_kernels::@combine blocks in (%{{.*}}, %c1{{[_0-9]*}}, %c1{{[_0-9]*}}) threads in (%c128
// CHECK:       gpu.launch_func  @moe_kernels::@stats_histogram
// CHECK:       gpu.launch_func  @moe_kernels::@stats_totals
// CHECK-NOT:   moe.

// CHECK:       gpu.module @moe_kernels
// Both operands' chunks staged in shared memory (rows padded to 33 floats),
// a barrier before and after the products; each thread sums 4 x 4 logits.
// CHECK:       gpu.func @router_logits({{.*}}) workgroup(%[[XS:.*]] : memref<64x33xf32, #gpu.address_space<workgroup>>, %[[WS:.*]] : memref<64x33xf32, #gpu.address_space<workgroup>>) kernel attributes {known_block_size = array<i32: 256, 1, 1>}
// CHECK:         gpu.thread_id  x
// CHECK:         gpu.block_id  x
// CHECK:         gpu.block_id  y
// CHECK:         scf.for {{.*}} iter_args(
// CHECK-COUNT-8: memref.store %{{.*}}, %[[XS]]
// CHECK-COUNT-8: memref.store %{{.*}}, %[[WS]]
// CHECK:         gpu.barrier
// CHECK:         scf.for {{.*}} iter_args(
// CHECK-COUNT-4: memref.load %[[XS]]
// CHECK-COUNT-16: math.fma
// CHECK:         gpu.barrier
// CHECK:       gpu.func @router_softmax_topk(
// Per-thread selection scratch and the token's scores.
// CHECK:         memref.alloca() {alignment = 64 : i64} : memref<8xf32>
// CHECK:         memref.alloca() {alignment = 64 : i64} : memref<8xi8>
// CHECK:         memref.alloca() {alignment = 64 : i64} : memref<1x8xf32>
// CHECK:         math.exp
// CHECK:       gpu.func @dispatch_histogram({{.*}}) kernel attributes {known_block_size = array<i32: 128, 1, 1>}
// CHECK:       gpu.func @dispatch_offsets({{.*}}) kernel attributes {known_block_size = array<i32: 256, 1, 1>}
// Ranks and fills, a barrier, the padded scan on one thread, a barrier, the
// tile table.
// CHECK:         scf.for %{{.*}} = %{{.*}} to %c8{{[_0-9]*}} step %c256
// CHECK:         gpu.barrier
// CHECK:         scf.if
// CHECK:         gpu.barrier
// CHECK:         scf.for %{{.*}} = %{{.*}} to %c8{{[_0-9]*}} step %c256
// CHECK:       gpu.func @dispatch_scatter({{.*}}) kernel attributes {known_block_size = array<i32: 128, 1, 1>}
// CHECK:       gpu.func @expert_ffn_gate_up(
// CHECK:         nvvm.mma.sync
// CHECK:       gpu.func @shared_ffn_down(
// CHECK:         nvvm.mma.sync
// CHECK:       gpu.func @combine(
// CHECK:         gpu.block_id  y
// CHECK:         scf.for {{.*}} iter_args
// CHECK:         arith.select
// CHECK:       gpu.func @stats_histogram(
// CHECK:       gpu.func @stats_totals(
func.func @qwen2(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %g: tensor<8x32x64xf32>,
                 %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<64x64xf32>,
                 %su: tensor<64x64xf32>, %sd: tensor<64x64xf32>, %seg: tensor<1x64xf32>)
    -> (tensor<?x64xf32>, tensor<8xi64>) {
  %y, %n = moe.layer %x router(%r) experts(up %u, down %d, gate %g) shared_gate %sg
      shared_up %su shared_down %sd shared_expert_gate %seg scoring = softmax k = 2
      activation = silu tile_rows = 128
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>,
         tensor<1x64xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return %y, %n : tensor<?x64xf32>, tensor<8xi64>
}

// -----

// Capacity depends on token order: after the per-token selection, the
// dispatch's phases rank each slot among its expert's (a thread per chunk of
// slots, per expert, per chunk).
// CHECK-LABEL: func.func @switch
// CHECK:       gpu.launch_func  @moe_kernels::@router_softmax_topk blocks
// CHECK:       %[[CHUNKS:.*]] = arith.ceildivui %{{.*}}, %c256{{[_0-9]*}} : index
// CHECK:       %[[COUNTS:.*]] = gpu.alloc  (%[[CHUNKS]]) : memref<?x8xi32>
// CHECK:       gpu.launch_func  @moe_kernels::@capacity_histogram
// CHECK:       gpu.launch_func  @moe_kernels::@capacity_ranks
// CHECK:       gpu.launch_func  @moe_kernels::@capacity_apply
// CHECK:       gpu.dealloc  %[[COUNTS]]
// CHECK:       gpu.func @capacity_apply({{.*}}) kernel attributes {known_block_size = array<i32: 128, 1, 1>}
func.func @switch(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %wi: tensor<8x48x64xf32>,
                  %wo: tensor<8x64x48xf32>) -> (tensor<?x64xf32>, tensor<8xi64>) {
  %y, %n = moe.layer %x router(%r) experts(up %wi, down %wo) scoring = softmax k = 1
      capacity = 8 activation = relu tile_rows = 128
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x48x64xf32>, tensor<8x64x48xf32>)
      -> (tensor<?x64xf32>, tensor<8xi64>)
  return %y, %n : tensor<?x64xf32>, tensor<8xi64>
}

// -----

// Scores read by more than the selection: the softmax is a kernel of its
// own; sigmoid scores come from the logits kernel's epilogue.
// CHECK-LABEL: func.func @router_alone
// CHECK:       gpu.launch_func  @moe_kernels::@router_logits {{.*}} args({{.*}} : memref<?x64xf32>, {{.*}} : memref<8x64xf32>, {{.*}} : memref<?x8xf32>)
// CHECK:       gpu.launch_func  @moe_kernels::@router_softmax {{.*}} args({{.*}} : memref<?x8xf32>, {{.*}} : memref<?x8xf32>)
// CHECK:       gpu.launch_func  @moe_kernels::@router_logits_0 {{.*}} args({{.*}} : memref<?x64xf32>, {{.*}} : memref<8x64xf32>, {{.*}} : memref<?x8xf32>, {{.*}} : memref<?x8xf32>)
// CHECK:       gpu.launch_func  @moe_kernels::@topk
// CHECK:       gpu.func @router_logits_0(
// CHECK:         math.exp
func.func @router_alone(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>)
    -> (tensor<?x8xf32>, tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>) {
  %logits, %scores = moe.router %x, %r scoring = softmax
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  %l2, %s2 = moe.router %x, %r scoring = sigmoid
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  %w, %idx = moe.topk %s2 k = 2 : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return %logits, %scores, %w, %idx : tensor<?x8xf32>, tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>
}

// -----

func.func @aux_loss(%logits: tensor<?x8xf32>, %idx: tensor<?x2xi32>) -> tensor<f32> {
  // expected-error @+1 {{'moe.aux_loss' op has no GPU kernel yet (the cuda target runs inference layers)}}
  %l = moe.aux_loss load_balancing %logits, %idx : tensor<?x2xi32> : tensor<?x8xf32> -> tensor<f32>
  return %l : tensor<f32>
}
