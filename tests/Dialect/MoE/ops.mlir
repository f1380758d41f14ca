// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s --mlir-print-op-generic | moe-opt | FileCheck %s

// CHECK-LABEL: func @mixtral_layer
func.func @mixtral_layer(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>,
                         %w1: tensor<8x32x64xf32>, %w3: tensor<8x32x64xf32>,
                         %w2: tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>) {
  // CHECK: moe.layer %{{.*}} router(%{{.*}}) experts(up %{{.*}}, down %{{.*}}, gate %{{.*}}) scoring = softmax k = 2 renormalize activation = silu :
  %y, %n = moe.layer %x router(%wr) experts(up %w3, down %w2, gate %w1)
      scoring = softmax k = 2 renormalize activation = silu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return %y, %n : tensor<?x64xf32>, tensor<8xi64>
}

// CHECK-LABEL: func @deepseek_v3_layer
func.func @deepseek_v3_layer(%x: tensor<?x64xf32>, %wr: tensor<16x64xf32>, %b: tensor<16xf32>,
                             %wg: tensor<16x32x64xf32>, %wu: tensor<16x32x64xf32>,
                             %wd: tensor<16x64x32xf32>, %sg: tensor<32x64xf32>,
                             %su: tensor<32x64xf32>, %sd: tensor<64x32xf32>)
    -> (tensor<?x64xf32>, tensor<16xi64>) {
  // CHECK: moe.layer %{{.*}} router(%{{.*}}, bias %{{.*}}) experts(up %{{.*}}, down %{{.*}}, gate %{{.*}}) shared_gate %{{.*}} shared_up %{{.*}} shared_down %{{.*}} scoring = sigmoid k = 4 groups = 4 topk_groups = 2 group_score = top2_sum renormalize scaling_factor = 2.500000e+00 activation = silu tile_rows = 8 :
  %y, %n = moe.layer %x router(%wr, bias %b) experts(up %wu, down %wd, gate %wg)
      shared_gate %sg shared_up %su shared_down %sd
      scoring = sigmoid k = 4 groups = 4 topk_groups = 2 group_score = top2_sum
      renormalize scaling_factor = 2.5 activation = silu tile_rows = 8
      : (tensor<?x64xf32>, tensor<16x64xf32>, tensor<16xf32>, tensor<16x32x64xf32>,
         tensor<16x32x64xf32>, tensor<16x64x32xf32>, tensor<32x64xf32>, tensor<32x64xf32>,
         tensor<64x32xf32>) -> (tensor<?x64xf32>, tensor<16xi64>)
  return %y, %n : tensor<?x64xf32>, tensor<16xi64>
}

// CHECK-LABEL: func @qwen2_layer
func.func @qwen2_layer(%x: tensor<5x64xf32>, %wr: tensor<8x64xf32>, %wg: tensor<8x32x64xbf16>,
                       %wu: tensor<8x32x64xbf16>, %wd: tensor<8x64x32xbf16>,
                       %sg: tensor<48x64xf32>, %su: tensor<48x64xf32>, %sd: tensor<64x48xf32>,
                       %g: tensor<1x64xf32>) -> (tensor<5x64xf32>, tensor<8xi64>) {
  // CHECK: shared_expert_gate %{{.*}} scoring = softmax k = 4 activation = silu :
  %y, %n = moe.layer %x router(%wr) experts(up %wu, down %wd, gate %wg)
      shared_gate %sg shared_up %su shared_down %sd shared_expert_gate %g
      scoring = softmax k = 4 activation = silu
      : (tensor<5x64xf32>, tensor<8x64xf32>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>, tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>,
         tensor<1x64xf32>) -> (tensor<5x64xf32>, tensor<8xi64>)
  return %y, %n : tensor<5x64xf32>, tensor<8xi64>
}

// CHECK-LABEL: func @switch_layer
func.func @switch_layer(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %wi: tensor<8x128x64xf32>,
                        %wo: tensor<8x64x128xf32>) -> (tensor<?x64xf32>, tensor<8xi64>) {
  // CHECK: experts(up %{{.*}}, down %{{.*}}) scoring = softmax k = 1 capacity = 4 activation = relu :
  %y, %n = moe.layer %x router(%wr) experts(up %wi, down %wo)
      scoring = softmax k = 1 capacity = 4 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x128x64xf32>, tensor<8x64x128xf32>)
      -> (tensor<?x64xf32>, tensor<8xi64>)
  return %y, %n : tensor<?x64xf32>, tensor<8xi64>
}

// CHECK-LABEL: func @primitives
func.func @primitives(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %b: tensor<8xf32>,
                      %w1: tensor<8x32x64xf32>, %w3: tensor<8x32x64xf32>,
                      %w2: tensor<8x64x32xf32>, %su: tensor<48x64xf32>,
                      %sd: tensor<64x48xf32>, %g: tensor<1x64xf32>)
    -> (tensor<?x64xf32>, tensor<8xi64>, tensor<f32>, tensor<f32>) {
  // CHECK: moe.router %{{.*}}, %{{.*}} scoring = sigmoid : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  %logits, %scores = moe.router %x, %wr scoring = sigmoid
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  // CHECK: moe.topk %{{.*}} bias %{{.*}} : tensor<8xf32> k = 2 groups = 4 topk_groups = 2 scaling_factor = 1.500000e+00 capacity = 3 :
  %w, %idx = moe.topk %scores bias %b : tensor<8xf32> k = 2 groups = 4 topk_groups = 2
      scaling_factor = 1.5 capacity = 3
      : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  // CHECK: moe.dispatch %{{.*}} experts = 8 tile_rows = 4 :
  %rows, %slot_rows, %offsets, %tiles = moe.dispatch %idx experts = 8 tile_rows = 4
      : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>
  // CHECK: moe.expert_ffn %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} gate(%{{.*}}) up(%{{.*}}) down(%{{.*}}) activation = gelu_tanh tile_rows = 4 :
  %out = moe.expert_ffn %x, %rows, %tiles, %w gate(%w1) up(%w3) down(%w2)
      activation = gelu_tanh tile_rows = 4
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>,
         tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  // CHECK: moe.shared_expert %{{.*}} up(%{{.*}}) down(%{{.*}}) expert_gate(%{{.*}}) activation = gelu :
  %shared = moe.shared_expert %x up(%su) down(%sd) expert_gate(%g) activation = gelu
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>, tensor<1x64xf32>)
      -> tensor<?x64xf32>
  // CHECK: moe.combine %{{.*}}, %{{.*}} add %{{.*}} : tensor<?x64xf32> : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>
  %y = moe.combine %out, %slot_rows add %shared : tensor<?x64xf32>
      : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>
  // CHECK: moe.stats %{{.*}} : tensor<?x2xi32> -> tensor<8xi64>
  %n = moe.stats %idx : tensor<?x2xi32> -> tensor<8xi64>
  // CHECK: moe.aux_loss load_balancing %{{.*}}, %{{.*}} : tensor<?x2xi32> : tensor<?x8xf32> -> tensor<f32>
  %lb = moe.aux_loss load_balancing %logits, %idx : tensor<?x2xi32> : tensor<?x8xf32> -> tensor<f32>
  // CHECK: moe.aux_loss z_loss %{{.*}} : tensor<?x8xf32> -> tensor<f32>
  %z = moe.aux_loss z_loss %logits : tensor<?x8xf32> -> tensor<f32>
  return %y, %n, %lb, %z : tensor<?x64xf32>, tensor<8xi64>, tensor<f32>, tensor<f32>
}

// Weights packed into panels of 8 outputs (moe-pack-weights).
// CHECK-LABEL: func @packed_ffn
// CHECK: moe.expert_ffn {{.*}} activation = silu weight_panel = 8 :
// CHECK: moe.shared_expert {{.*}} activation = silu weight_panel = 8 :
func.func @packed_ffn(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                      %g: tensor<8x6x64x8xf32>, %u: tensor<8x6x64x8xf32>, %d: tensor<8x8x48x8xf32>,
                      %su: tensor<5x64x8xf32>, %sd: tensor<8x40x8xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %y = moe.expert_ffn %x, %r, %t, %w gate(%g) up(%u) down(%d) activation = silu weight_panel = 8
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x6x64x8xf32>,
         tensor<8x6x64x8xf32>, tensor<8x8x48x8xf32>) -> tensor<?x64xf32>
  %s = moe.shared_expert %x up(%su) down(%sd) activation = silu weight_panel = 8
      : (tensor<?x64xf32>, tensor<5x64x8xf32>, tensor<8x40x8xf32>) -> tensor<?x64xf32>
  return %y, %s : tensor<?x64xf32>, tensor<?x64xf32>
}

// The CPU schedule attribute: defaults elided, others printed.
// CHECK-LABEL: func @scheduled_router
// CHECK: moe.router %{{.*}}, %{{.*}} scoring = softmax {schedule = #moe.cpu_schedule<vector_width = 16, row_block = 12>}
// CHECK: moe.router %{{.*}}, %{{.*}} scoring = softmax {schedule = #moe.cpu_schedule<>}
func.func @scheduled_router(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) -> (tensor<?x8xf32>, tensor<?x8xf32>) {
  %l, %s = moe.router %x, %w scoring = softmax {schedule = #moe.cpu_schedule<vector_width = 16, row_block = 12>}
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  %l2, %s2 = moe.router %x, %w scoring = softmax {schedule = #moe.cpu_schedule<col_block = 2>}
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return %s, %s2 : tensor<?x8xf32>, tensor<?x8xf32>
}

// bf16 activations, and bf16 weights packed into panels of input pairs.
// CHECK-LABEL: func @bf16_pairs
func.func @bf16_pairs(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %w1: tensor<8x32x64xbf16>,
                      %w3: tensor<8x32x64xbf16>, %w2: tensor<8x64x32xbf16>,
                      %rows: tensor<?xi32>, %tiles: tensor<?xi32>, %w: tensor<?x2xf32>,
                      %g: tensor<8x4x32x16xbf16>, %u: tensor<8x4x32x16xbf16>, %d: tensor<8x8x16x16xbf16>,
                      %su: tensor<6x32x16xbf16>, %sd: tensor<8x24x16xbf16>) {
  // CHECK: moe.layer {{.*}} activation = silu activation_type = bf16 :
  %y, %n = moe.layer %x router(%wr) experts(up %w3, down %w2, gate %w1)
      scoring = softmax k = 2 renormalize activation = silu activation_type = bf16
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>,
         tensor<8x64x32xbf16>) -> (tensor<?x64xf32>, tensor<8xi64>)
  // CHECK: moe.expert_ffn {{.*}} activation = silu weight_panel = 8 weight_k_pack = 2 activation_type = bf16 :
  %out = moe.expert_ffn %x, %rows, %tiles, %w gate(%g) up(%u) down(%d)
      activation = silu weight_panel = 8 weight_k_pack = 2 activation_type = bf16
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x4x32x16xbf16>,
         tensor<8x4x32x16xbf16>, tensor<8x8x16x16xbf16>) -> tensor<?x64xf32>
  // CHECK: moe.shared_expert {{.*}} activation = silu weight_panel = 8 weight_k_pack = 2 :
  %s = moe.shared_expert %x up(%su) down(%sd) activation = silu weight_panel = 8 weight_k_pack = 2
      : (tensor<?x64xf32>, tensor<6x32x16xbf16>, tensor<8x24x16xbf16>) -> tensor<?x64xf32>
  return
}
