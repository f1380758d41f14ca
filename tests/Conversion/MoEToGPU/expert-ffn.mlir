// RUN: moe-opt %s --convert-moe-to-gpu --split-input-file --verify-diagnostics | FileCheck %s

// A gated expert FFN becomes two tensor-core kernels and, where it was, two
// launches over the plan's rows (16 per warp, 32 columns per warp) between
// device allocations of the bf16 intermediate and the f32 output.

// CHECK-LABEL: module attributes {gpu.container_module}
// CHECK-LABEL: func.func @gated
// CHECK:       %[[ROWS:.*]] = memref.dim %{{.*}}, %c0 : memref<?xi32>
// CHECK:       %[[H:.*]] = gpu.alloc  (%[[ROWS]]) : memref<?x48xbf16>
// CHECK:       %[[OUT:.*]] = gpu.alloc  (%[[ROWS]]) : memref<?x64xf32>
// CHECK:       %[[BLOCKS:.*]] = arith.divui %[[ROWS]], %c16
// CHECK:       gpu.launch_func  @moe_kernels::@expert_ffn_gate_up blocks in (%[[BLOCKS]], %c2{{[_0-9]*}}, %c1{{[_0-9]*}}) threads in (%c32{{[_0-9]*}}, %c1{{[_0-9]*}}, %c1{{[_0-9]*}})
// CHECK-SAME:    args({{.*}} : memref<?x64xf32>, {{.*}} : memref<?xi32>, {{.*}} : memref<?xi32>, {{.*}} : memref<8x48x64xbf16>, {{.*}} : memref<8x48x64xbf16>, %[[H]] : memref<?x48xbf16>)
// CHECK:       gpu.launch_func  @moe_kernels::@expert_ffn_down blocks in (%[[BLOCKS]], %c2{{[_0-9]*}}, %c1{{[_0-9]*}}) threads in (%c32{{[_0-9]*}}, %c1{{[_0-9]*}}, %c1{{[_0-9]*}})
// CHECK-SAME:    args(%[[H]] : memref<?x48xbf16>, {{.*}} : memref<?x64xf32>, {{.*}} : memref<?xi32>, {{.*}} : memref<?xi32>, {{.*}} : memref<8x64x48xbf16>, {{.*}} : memref<?x2xf32>, %[[OUT]] : memref<?x64xf32>)
// CHECK:       gpu.dealloc  %[[H]]
// CHECK:       bufferization.to_tensor %[[OUT]]

// CHECK:       gpu.module @moe_kernels
// CHECK:       gpu.func @expert_ffn_gate_up({{.*}}) kernel attributes {known_block_size = array<i32: 32, 1, 1>}
// The K loop carries 2 matrices x 4 column tiles x 4 accumulators.
// CHECK:         scf.for {{.*}} -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)
// bf16 weights are read as they are, two per lane and register.
// CHECK:           vector.load {{.*}} {alignment = 4 : i64} : memref<8x48x64xbf16>, vector<2xbf16>
// CHECK:           nvvm.mma.sync {{.*}} {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>}
// The epilogue: silu(gate) * up, stored as bf16 pairs.
// CHECK:         math.exp
// CHECK:         vector.store {{.*}} : memref<?x48xbf16>, vector<2xbf16>
// CHECK:       gpu.func @expert_ffn_down({{.*}}) kernel
// CHECK:         nvvm.mma.sync
// Padding rows (slot -1) are scaled by 0.
// CHECK:         arith.cmpi sge
// CHECK:         arith.select
// CHECK:         vector.store {{.*}} : memref<?x64xf32>, vector<2xf32>
func.func @gated(%x: tensor<?x64xf32>, %rows: tensor<?xi32>, %tiles: tensor<?xi32>,
                 %w: tensor<?x2xf32>, %w1: tensor<8x48x64xbf16>,
                 %w3: tensor<8x48x64xbf16>, %w2: tensor<8x64x48xbf16>) -> tensor<?x64xf32> {
  %0 = moe.expert_ffn %x, %rows, %tiles, %w gate(%w1) up(%w3) down(%w2)
      activation = silu
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>,
         tensor<8x48x64xbf16>, tensor<8x48x64xbf16>, tensor<8x64x48xbf16>)
      -> tensor<?x64xf32>
  return %0 : tensor<?x64xf32>
}

// -----

// Plain (non-GLU) experts with f32 weights: one matrix in the first kernel,
// rounded to bf16 as it is loaded; relu in the epilogue.
// CHECK-LABEL: func.func @plain
// CHECK:       gpu.launch_func  @moe_kernels::@expert_ffn_gate_up
// CHECK-SAME:    args({{.*}} : memref<?x32xf32>, {{.*}} : memref<?xi32>, {{.*}} : memref<?xi32>, {{.*}} : memref<4x16x32xf32>, {{.*}} : memref<?x16xbf16>)
// CHECK:       gpu.func @expert_ffn_gate_up
// CHECK:         scf.for {{.*}} -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)
// CHECK:           vector.load {{.*}} {alignment = 8 : i64} : memref<4x16x32xf32>, vector<2xf32>
// CHECK:           arith.truncf {{.*}} : vector<2xf32> to vector<2xbf16>
// CHECK:         arith.maximumf
func.func @plain(%x: tensor<?x32xf32>, %rows: tensor<?xi32>, %tiles: tensor<?xi32>,
                 %w: tensor<?x1xf32>, %wi: tensor<4x16x32xf32>,
                 %wo: tensor<4x32x16xf32>) -> tensor<?x32xf32> {
  %0 = moe.expert_ffn %x, %rows, %tiles, %w up(%wi) down(%wo) activation = relu
      : (tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x1xf32>,
         tensor<4x16x32xf32>, tensor<4x32x16xf32>) -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

func.func @hidden_not_multiple_of_16(%x: tensor<?x40xf32>, %rows: tensor<?xi32>, %tiles: tensor<?xi32>,
                 %w: tensor<?x1xf32>, %wi: tensor<4x16x40xf32>,
                 %wo: tensor<4x40x16xf32>) -> tensor<?x40xf32> {
  // expected-error @+1 {{'moe.expert_ffn' op the cuda target needs the hidden size to be a multiple of 16 (bf16 mma k-step), got 40}}
  %0 = moe.expert_ffn %x, %rows, %tiles, %w up(%wi) down(%wo) activation = relu
      : (tensor<?x40xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x1xf32>,
         tensor<4x16x40xf32>, tensor<4x40x16xf32>) -> tensor<?x40xf32>
  return %0 : tensor<?x40xf32>
}

// -----

func.func @width_not_multiple_of_16(%x: tensor<?x32xf32>, %rows: tensor<?xi32>, %tiles: tensor<?xi32>,
                 %w: tensor<?x1xf32>, %wi: tensor<4x24x32xf32>,
                 %wo: tensor<4x32x24xf32>) -> tensor<?x32xf32> {
  // expected-error @+1 {{'moe.expert_ffn' op the cuda target needs the expert width to be a multiple of 16 (bf16 mma k-step), got 24}}
  %0 = moe.expert_ffn %x, %rows, %tiles, %w up(%wi) down(%wo) activation = relu
      : (tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x1xf32>,
         tensor<4x24x32xf32>, tensor<4x32x24xf32>) -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

func.func @tile_rows(%x: tensor<?x32xf32>, %rows: tensor<?xi32>, %tiles: tensor<?xi32>,
                 %w: tensor<?x1xf32>, %wi: tensor<4x16x32xf32>,
                 %wo: tensor<4x32x16xf32>) -> tensor<?x32xf32> {
  // expected-error @+1 {{'moe.expert_ffn' op the cuda target needs tile_rows to be a multiple of 16 (one warp's rows), got 8}}
  %0 = moe.expert_ffn %x, %rows, %tiles, %w up(%wi) down(%wo) activation = relu tile_rows = 8
      : (tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x1xf32>,
         tensor<4x16x32xf32>, tensor<4x32x16xf32>) -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

func.func @f16_weights(%x: tensor<?x32xf32>, %rows: tensor<?xi32>, %tiles: tensor<?xi32>,
                 %w: tensor<?x1xf32>, %wi: tensor<4x16x32xf16>,
                 %wo: tensor<4x32x16xf16>) -> tensor<?x32xf32> {
  // expected-error @+1 {{'moe.expert_ffn' op the cuda target reads f32 or bf16 expert weights, got 'f16'}}
  %0 = moe.expert_ffn %x, %rows, %tiles, %w up(%wi) down(%wo) activation = relu
      : (tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x1xf32>,
         tensor<4x16x32xf16>, tensor<4x32x16xf16>) -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

func.func @packed(%x: tensor<?x32xf32>, %rows: tensor<?xi32>, %tiles: tensor<?xi32>,
                 %w: tensor<?x1xf32>, %wi: tensor<4x2x32x8xf32>,
                 %wo: tensor<4x4x16x8xf32>) -> tensor<?x32xf32> {
  // expected-error @+1 {{'moe.expert_ffn' op the cuda target reads unpacked weights, not weight_panel = 8}}
  %0 = moe.expert_ffn %x, %rows, %tiles, %w up(%wi) down(%wo) activation = relu weight_panel = 8
      : (tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x1xf32>,
         tensor<4x2x32x8xf32>, tensor<4x4x16x8xf32>) -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}

// -----

func.func @f32_activations(%x: tensor<?x32xf32>, %rows: tensor<?xi32>, %tiles: tensor<?xi32>,
                 %w: tensor<?x1xf32>, %wi: tensor<4x16x32xbf16>,
                 %wo: tensor<4x32x16xbf16>) -> tensor<?x32xf32> {
  // expected-error @+1 {{'moe.expert_ffn' op the cuda target multiplies bf16 activations (tensor cores), not activation_type = 'f32'}}
  %0 = moe.expert_ffn %x, %rows, %tiles, %w up(%wi) down(%wo) activation = relu activation_type = f32
      : (tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x1xf32>,
         tensor<4x16x32xbf16>, tensor<4x32x16xbf16>) -> tensor<?x32xf32>
  return %0 : tensor<?x32xf32>
}
