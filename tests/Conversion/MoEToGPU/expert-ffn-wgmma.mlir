// RUN: moe-opt %s --convert-moe-to-gpu=mma=wgmma --split-input-file --verify-diagnostics | FileCheck %s
// RUN: moe-opt %s --convert-moe-to-gpu="mma=wgmma wgmma-gate-up-cols=128 wgmma-down-cols=256 wgmma-stages=3" --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=TILES
// RUN: not moe-opt %s --convert-moe-to-gpu="mma=wgmma wgmma-gate-up-cols=136" --split-input-file 2>&1 | FileCheck %s --check-prefix=BADCOLS
// RUN: not moe-opt %s --convert-moe-to-gpu="mma=wgmma wgmma-gate-up-cols=128 wgmma-stages=6" --split-input-file 2>&1 | FileCheck %s --check-prefix=BADSHARED

// The blocking is a pass option: 128 gate/up columns per matrix, 256 down
// columns, 3 stages of 40 KB.
// TILES-LABEL: func.func @gated
// TILES:       nvgpu.tma.create.descriptor {{.*}} box[%c1{{[_0-9]*}}, %c128{{[_0-9]*}}, %c64{{[_0-9]*}}] : memref<*xbf16> -> <tensor = memref<1x128x64xbf16
// TILES:       %[[SHARED:.*]] = arith.constant 122904 : i32
// TILES:       gpu.launch_func  @moe_kernels::@expert_ffn_gate_up_wgmma {{.*}} dynamic_shared_memory_size %[[SHARED]]
// TILES:       nvgpu.tma.create.descriptor {{.*}} box[%c1{{[_0-9]*}}, %c256{{[_0-9]*}}, %c64{{[_0-9]*}}] : memref<*xbf16> -> <tensor = memref<1x256x64xbf16
// TILES:       gpu.func @expert_ffn_gate_up_wgmma
// TILES:         nvvm.mbarrier.arrive.expect_tx %{{.*}}, %c40960_i32
// TILES-COUNT-8: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 128, k = 16>
// TILES:       gpu.func @expert_ffn_down_wgmma
// TILES-COUNT-4: nvvm.wgmma.mma_async {{.*}} <m = 64, n = 256, k = 16>
// BADCOLS: error: convert-moe-to-gpu: wgmma-gate-up-cols must be a multiple of 8 from 8 to 128, not 136
// BADSHARED: error: convert-moe-to-gpu: 6 stages of these tiles need 245808 bytes of shared memory per block; an sm_90 block has at most 232448

// With mma=wgmma a routed expert FFN becomes three kernels: the rows' x
// gathered as bf16 in row order, then gate/up and down as warpgroup MMAs
// over 64-row blocks whose operands TMA copies into shared memory. The host
// creates a tensor map per operand (the gathered rows, h, each weight) and
// passes it as the kernel's leading pointer parameters.

// CHECK-LABEL: func.func @gated
// CHECK:       %[[ROWS:.*]] = memref.dim %{{.*}}, %c0 : memref<?xi32>
// CHECK:       %[[XS:.*]] = gpu.alloc  (%[[ROWS]]) : memref<?x64xbf16>
// CHECK:       gpu.launch_func  @moe_kernels::@expert_ffn_gather blocks in (%[[ROWS]], %c1{{[_0-9]*}}, %c1{{[_0-9]*}}) threads in (%c128{{[_0-9]*}},
// CHECK-SAME:    args({{.*}} : memref<?x64xf32>, {{.*}} : memref<?xi32>, %[[XS]] : memref<?x64xbf16>)
// CHECK:       %[[H:.*]] = gpu.alloc  (%[[ROWS]]) : memref<?x48xbf16>
// CHECK:       %[[BLOCKS:.*]] = arith.divui %[[ROWS]], %c64
// CHECK:       %[[XSU:.*]] = memref.cast %[[XS]] : memref<?x64xbf16> to memref<*xbf16>
// CHECK:       %[[XSMAP:.*]] = nvgpu.tma.create.descriptor %[[XSU]] box[%c64{{[_0-9]*}}, %c64{{[_0-9]*}}] : memref<*xbf16> -> <tensor = memref<64x64xbf16, #gpu.address_space<workgroup>>, swizzle = swizzle_128b, l2promo = none, oob = zero, interleave = none>
// CHECK:       %[[XSPTR:.*]] = builtin.unrealized_conversion_cast %[[XSMAP]] {{.*}} to !llvm.ptr
// Stacked weights: boxes of one expert's 64 rows of 64 inputs.
// CHECK:       nvgpu.tma.create.descriptor {{.*}} box[%c1{{[_0-9]*}}, %c64{{[_0-9]*}}, %c64{{[_0-9]*}}] : memref<*xbf16> -> <tensor = memref<1x64x64xbf16
// CHECK:       nvgpu.tma.create.descriptor {{.*}} box[%c1{{[_0-9]*}}, %c64{{[_0-9]*}}, %c64{{[_0-9]*}}] : memref<*xbf16> -> <tensor = memref<1x64x64xbf16
// 4 stages of 24 KB and their 4 mbarriers.
// CHECK:       %[[SHARED:.*]] = arith.constant 98336 : i32
// CHECK:       gpu.launch_func  @moe_kernels::@expert_ffn_gate_up_wgmma blocks in (%[[BLOCKS]], %c1{{[_0-9]*}}, %c1{{[_0-9]*}}) threads in (%c128{{[_0-9]*}}, {{.*}}) dynamic_shared_memory_size %[[SHARED]]
// CHECK-SAME:    args(%[[XSPTR]] : !llvm.ptr, {{.*}} : !llvm.ptr, {{.*}} : !llvm.ptr, {{.*}} : memref<?xi32>, {{.*}} : memref<?xi32>, %[[H]] : memref<?x48xbf16>)
// CHECK:       gpu.dealloc  %[[XS]]
// CHECK:       %[[OUT:.*]] = gpu.alloc  (%[[ROWS]]) : memref<?x64xf32>
// CHECK:       nvgpu.tma.create.descriptor {{.*}} box[%c64{{[_0-9]*}}, %c64{{[_0-9]*}}] : memref<*xbf16> -> <tensor = memref<64x64xbf16
// CHECK:       nvgpu.tma.create.descriptor {{.*}} box[%c1{{[_0-9]*}}, %c128{{[_0-9]*}}, %c64{{[_0-9]*}}] : memref<*xbf16> -> <tensor = memref<1x128x64xbf16
// CHECK:       gpu.launch_func  @moe_kernels::@expert_ffn_down_wgmma blocks in (%[[BLOCKS]], %c1{{[_0-9]*}}, %c1{{[_0-9]*}}) {{.*}} dynamic_shared_memory_size
// CHECK-SAME:    args({{.*}} : !llvm.ptr, {{.*}} : !llvm.ptr, {{.*}} : memref<?x64xf32>, {{.*}} : memref<?xi32>, {{.*}} : memref<?xi32>, {{.*}} : memref<?x2xf32>, %[[OUT]] : memref<?x64xf32>)
// CHECK:       gpu.dealloc  %[[H]]

// CHECK:       gpu.module @moe_kernels
// CHECK:       llvm.mlir.global external @moe_wgmma_shared() {addr_space = 3 : i32, alignment = 1024 : i64} : !llvm.array<0 x i8>
// Real rows only (slot >= 0): padding rows are never read for real rows.
// CHECK:       gpu.func @expert_ffn_gather
// CHECK:         arith.cmpi sge
// CHECK:         scf.if
// CHECK:           arith.truncf {{.*}} : f32 to bf16
// CHECK:       gpu.func @expert_ffn_gate_up_wgmma(%[[MX:.*]]: !llvm.ptr, %[[MG:.*]]: !llvm.ptr, %[[MU:.*]]: !llvm.ptr, {{.*}}) kernel attributes {known_block_size = array<i32: 128, 1, 1>, moe.tensor_map_params = 3 : i64}
// Thread 0 sets up the stages' barriers and issues the first copies:
// x's rows (k, row), the weights' rows (k, column, expert).
// CHECK:         nvvm.mbarrier.init
// CHECK:         nvvm.fence.mbarrier.init
// CHECK:         gpu.barrier
// CHECK:         nvvm.mbarrier.arrive.expect_tx %{{.*}}, %c24576_i32
// CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.*}}, %[[MX]], %{{.*}}, box[%{{.*}}, %{{.*}}] : !llvm.ptr<7>, !llvm.ptr
// CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.*}}, %[[MG]], %{{.*}}, box[%{{.*}}, %{{.*}}, %{{.*}}]
// CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global %{{.*}}, %[[MU]], %{{.*}}, box[%{{.*}}, %{{.*}}, %{{.*}}]
// The K loop carries one accumulator per matrix; per stage: wait for its
// copies, 4 K slices of both matrices as one group, wait for the previous
// block's group (this one stays in flight), barrier, refill the previous
// block's stage; all groups done before the epilogue.
// CHECK:         scf.for {{.*}} -> (!llvm.struct<(f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)>, !llvm.struct<
// CHECK:           nvvm.mbarrier.try_wait.parity
// CHECK:           nvvm.wgmma.fence.aligned
// CHECK-COUNT-8:   nvvm.wgmma.mma_async {{.*}} <m = 64, n = 64, k = 16>, D[<f32>, <one>], A[<bf16>, <one>, <row>], B[<bf16>, <one>, <col>]
// CHECK:           nvvm.wgmma.commit.group.sync.aligned
// CHECK:           nvvm.wgmma.wait.group.sync.aligned 1
// CHECK:           gpu.barrier
// CHECK:           arith.cmpi uge
// CHECK:           scf.if
// CHECK:             nvvm.cp.async.bulk.tensor.shared.cluster.global
// CHECK:         nvvm.wgmma.wait.group.sync.aligned 0
// The epilogue: silu(gate) * up, stored as bf16 pairs.
// CHECK:         math.exp
// CHECK:         vector.store {{.*}} : memref<?x48xbf16>, vector<2xbf16>
// CHECK:       gpu.func @expert_ffn_down_wgmma({{.*}}) kernel attributes {{{.*}}moe.tensor_map_params = 2 : i64}
// CHECK:         nvvm.mbarrier.arrive.expect_tx %{{.*}}, %c24576_i32
// CHECK-COUNT-4:   nvvm.wgmma.mma_async {{.*}} <m = 64, n = 128, k = 16>
// CHECK:         arith.select
// CHECK:         vector.store {{.*}} : memref<?x64xf32>, vector<2xf32>
func.func @gated(%x: tensor<?x64xf32>, %rows: tensor<?xi32>, %tiles: tensor<?xi32>,
                 %w: tensor<?x2xf32>, %w1: tensor<8x48x64xbf16>,
                 %w3: tensor<8x48x64xbf16>, %w2: tensor<8x64x48xbf16>) -> tensor<?x64xf32> {
  %0 = moe.expert_ffn %x, %rows, %tiles, %w gate(%w1) up(%w3) down(%w2)
      activation = silu tile_rows = 64
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>,
         tensor<8x48x64xbf16>, tensor<8x48x64xbf16>, tensor<8x64x48xbf16>)
      -> tensor<?x64xf32>
  return %0 : tensor<?x64xf32>
}

// -----

// A shared expert's rows are the tokens, padded to 64; its weights are 2-D,
// so are their boxes.
// CHECK-LABEL: func.func @shared
// CHECK:       %[[T:.*]] = memref.dim %{{.*}}, %c0 : memref<?x64xf32>
// CHECK:       %[[B:.*]] = arith.ceildivui %[[T]], %c64
// CHECK:       %[[ROWS:.*]] = arith.muli %[[B]], %c64
// CHECK:       gpu.launch_func  @moe_kernels::@shared_ffn_gather blocks in (%[[ROWS]],
// CHECK-SAME:    args({{.*}} : memref<?x64xf32>, {{.*}} : memref<?x64xbf16>)
// CHECK:       nvgpu.tma.create.descriptor {{.*}} box[%c64{{[_0-9]*}}, %c64{{[_0-9]*}}] : memref<*xbf16> -> <tensor = memref<64x64xbf16
// CHECK:       gpu.launch_func  @moe_kernels::@shared_ffn_gate_up_wgmma
// CHECK-SAME:    args({{.*}} : !llvm.ptr, {{.*}} : !llvm.ptr, {{.*}} : memref<?x48xbf16>)
// CHECK:       nvgpu.tma.create.descriptor {{.*}} box[%c128{{[_0-9]*}}, %c64{{[_0-9]*}}] : memref<*xbf16> -> <tensor = memref<128x64xbf16
// CHECK:       gpu.launch_func  @moe_kernels::@shared_ffn_down_wgmma
// CHECK-SAME:    args({{.*}} : !llvm.ptr, {{.*}} : !llvm.ptr, {{.*}} : memref<?x64xf32>, {{.*}} : memref<1x64xf32>, {{.*}} : memref<?x64xf32>)
// CHECK:       gpu.func @shared_ffn_gather
// The rows past the last token are not written.
// CHECK:         arith.cmpi ult
// CHECK:         scf.if
// CHECK:       gpu.func @shared_ffn_gate_up_wgmma({{.*}}) kernel attributes {{{.*}}moe.tensor_map_params = 2 : i64}
// CHECK-COUNT-4:   nvvm.wgmma.mma_async {{.*}} <m = 64, n = 64, k = 16>
// CHECK:       gpu.func @shared_ffn_down_wgmma
// The sigmoid gate of each row's token.
// CHECK:         math.exp
func.func @shared(%x: tensor<?x64xf32>, %su: tensor<48x64xbf16>, %sd: tensor<64x48xbf16>,
                  %g: tensor<1x64xf32>) -> tensor<?x64xf32> {
  %0 = moe.shared_expert %x up(%su) down(%sd) expert_gate(%g) activation = gelu
      : (tensor<?x64xf32>, tensor<48x64xbf16>, tensor<64x48xbf16>, tensor<1x64xf32>)
      -> tensor<?x64xf32>
  return %0 : tensor<?x64xf32>
}

// -----

func.func @f32_weights(%x: tensor<?x64xf32>, %rows: tensor<?xi32>, %tiles: tensor<?xi32>,
                       %w: tensor<?x1xf32>, %wi: tensor<4x16x64xf32>,
                       %wo: tensor<4x64x16xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{'moe.expert_ffn' op warpgroup mma reads bf16 expert weights (TMA copies them as they are), got 'f32'}}
  %0 = moe.expert_ffn %x, %rows, %tiles, %w up(%wi) down(%wo) activation = relu tile_rows = 64
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x1xf32>,
         tensor<4x16x64xf32>, tensor<4x64x16xf32>) -> tensor<?x64xf32>
  return %0 : tensor<?x64xf32>
}

// -----

func.func @tile_rows_16(%x: tensor<?x64xf32>, %rows: tensor<?xi32>, %tiles: tensor<?xi32>,
                        %w: tensor<?x1xf32>, %wi: tensor<4x16x64xbf16>,
                        %wo: tensor<4x64x16xbf16>) -> tensor<?x64xf32> {
  // expected-error @+1 {{'moe.expert_ffn' op warpgroup mma needs tile_rows to be a multiple of 64 (one block's rows, one expert), got 16}}
  %0 = moe.expert_ffn %x, %rows, %tiles, %w up(%wi) down(%wo) activation = relu tile_rows = 16
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x1xf32>,
         tensor<4x16x64xbf16>, tensor<4x64x16xbf16>) -> tensor<?x64xf32>
  return %0 : tensor<?x64xf32>
}
