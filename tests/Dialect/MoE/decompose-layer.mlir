// RUN: moe-opt %s --moe-decompose-layer --split-input-file | FileCheck %s

// CHECK-LABEL: func @mixtral
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[WR:.*]]: tensor<8x64xf32>, %[[W1:.*]]: tensor<8x32x64xf32>, %[[W3:.*]]: tensor<8x32x64xf32>, %[[W2:.*]]: tensor<8x64x32xf32>)
// CHECK: %[[L:.*]], %[[S:.*]] = moe.router %[[X]], %[[WR]] scoring = softmax : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
// CHECK: %[[W:.*]], %[[I:.*]] = moe.topk %[[S]] k = 2 renormalize : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
// CHECK: %[[ROWS:.*]], %[[SR:.*]], %{{.*}}, %[[TILES:.*]] = moe.dispatch %[[I]] experts = 8 tile_rows = 4 : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>
// CHECK: %[[F:.*]] = moe.expert_ffn %[[X]], %[[ROWS]], %[[TILES]], %[[W]] gate(%[[W1]]) up(%[[W3]]) down(%[[W2]]) activation = silu tile_rows = 4
// CHECK-NOT: moe.shared_expert
// CHECK: %[[Y:.*]] = moe.combine %[[F]], %[[SR]] : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>
// CHECK: %[[N:.*]] = moe.stats %[[I]] : tensor<?x2xi32> -> tensor<8xi64>
// CHECK: return %[[Y]], %[[N]]
// CHECK-NOT: moe.layer
func.func @mixtral(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %w1: tensor<8x32x64xf32>,
                   %w3: tensor<8x32x64xf32>, %w2: tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>) {
  %y, %n = moe.layer %x router(%wr) experts(up %w3, down %w2, gate %w1)
      scoring = softmax k = 2 renormalize activation = silu tile_rows = 4
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return %y, %n : tensor<?x64xf32>, tensor<8xi64>
}

// -----

// Every routing attribute reaches moe.topk; the shared experts and their
// sigmoid gate become moe.shared_expert, added by moe.combine.

// CHECK-LABEL: func @deepseek_v3_like
// CHECK-SAME: (%[[X:.*]]: tensor<3x64xf32>, %[[WR:.*]]: tensor<16x64xf32>, %[[B:.*]]: tensor<16xf32>
// CHECK: %{{.*}}, %[[S:.*]] = moe.router %[[X]], %[[WR]] scoring = sigmoid
// CHECK: %[[W:.*]], %[[I:.*]] = moe.topk %[[S]] bias %[[B]] : tensor<16xf32> k = 4 groups = 4 topk_groups = 2 group_score = top2_sum renormalize scaling_factor = 2.500000e+00 capacity = 7 : tensor<3x16xf32> -> tensor<3x4xf32>, tensor<3x4xi32>
// CHECK: moe.dispatch %[[I]] experts = 16 :
// CHECK: %[[F:.*]] = moe.expert_ffn %[[X]], {{.*}} up(%{{.*}}) down(%{{.*}}) activation = gelu :
// CHECK: %[[SH:.*]] = moe.shared_expert %[[X]] gate(%{{.*}}) up(%{{.*}}) down(%{{.*}}) expert_gate(%{{.*}}) activation = gelu
// CHECK: moe.combine %[[F]], %{{.*}} add %[[SH]] : tensor<3x64xf32>
func.func @deepseek_v3_like(%x: tensor<3x64xf32>, %wr: tensor<16x64xf32>, %b: tensor<16xf32>,
                            %wu: tensor<16x32x64xf32>, %wd: tensor<16x64x32xf32>,
                            %sg: tensor<32x64xf32>, %su: tensor<32x64xf32>, %sd: tensor<64x32xf32>,
                            %g: tensor<1x64xf32>) -> (tensor<3x64xf32>, tensor<16xi64>) {
  %y, %n = moe.layer %x router(%wr, bias %b) experts(up %wu, down %wd)
      shared_gate %sg shared_up %su shared_down %sd shared_expert_gate %g
      scoring = sigmoid k = 4 groups = 4 topk_groups = 2 group_score = top2_sum
      renormalize scaling_factor = 2.5 capacity = 7 activation = gelu
      : (tensor<3x64xf32>, tensor<16x64xf32>, tensor<16xf32>, tensor<16x32x64xf32>,
         tensor<16x64x32xf32>, tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x32xf32>,
         tensor<1x64xf32>) -> (tensor<3x64xf32>, tensor<16xi64>)
  return %y, %n : tensor<3x64xf32>, tensor<16xi64>
}

// -----

// The layer's schedule reaches every primitive that runs matmuls.
// CHECK-LABEL: func @scheduled
// CHECK: moe.router {{.*}} {schedule = #moe.cpu_schedule<row_block = 4>}
// CHECK: moe.expert_ffn {{.*}} {schedule = #moe.cpu_schedule<row_block = 4>}
func.func @scheduled(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %w3: tensor<8x32x64xf32>,
                     %w2: tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>) {
  %y, %n = moe.layer %x router(%wr) experts(up %w3, down %w2)
      scoring = softmax k = 2 activation = relu {schedule = #moe.cpu_schedule<row_block = 4>}
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>)
      -> (tensor<?x64xf32>, tensor<8xi64>)
  return %y, %n : tensor<?x64xf32>, tensor<8xi64>
}
