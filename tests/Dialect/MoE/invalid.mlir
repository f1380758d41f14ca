// RUN: moe-opt %s -split-input-file -verify-diagnostics

// Router.

func.func @router_dynamic_experts(%x: tensor<?x64xf32>, %w: tensor<?x64xf32>) {
  // expected-error @+1 {{'moe.router' op requires a static number of experts in the router weight}}
  %l, %s = moe.router %x, %w scoring = softmax : tensor<?x64xf32>, tensor<?x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return
}

// -----

func.func @router_hidden_mismatch(%x: tensor<?x64xf32>, %w: tensor<8x32xf32>) {
  // expected-error @+1 {{'moe.router' op router weight has shape [8, 32], expected [8, 64]}}
  %l, %s = moe.router %x, %w scoring = softmax : tensor<?x64xf32>, tensor<8x32xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return
}

// -----

func.func @router_logits_shape(%x: tensor<4x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.router' op logits has shape [5, 8], expected [4, 8]}}
  %l, %s = moe.router %x, %w scoring = softmax : tensor<4x64xf32>, tensor<8x64xf32> -> tensor<5x8xf32>, tensor<4x8xf32>
  return
}

// -----

func.func @router_scores_shape(%x: tensor<4x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.router' op scores has shape [4, 7], expected [4, 8]}}
  %l, %s = moe.router %x, %w scoring = softmax : tensor<4x64xf32>, tensor<8x64xf32> -> tensor<4x8xf32>, tensor<4x7xf32>
  return
}

// -----

func.func @router_element_type(%x: tensor<4x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{'moe.router' op scores element type 'bf16' does not match the input's ('f32')}}
  %l, %s = moe.router %x, %w scoring = softmax : tensor<4x64xf32>, tensor<8x64xf32> -> tensor<4x8xf32>, tensor<4x8xbf16>
  return
}

// -----

func.func @router_bad_scoring(%x: tensor<4x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{expected string or keyword containing one of the following enum values for attribute 'scoring' [softmax, sigmoid]}}
  %l, %s = moe.router %x, %w scoring = tanh : tensor<4x64xf32>, tensor<8x64xf32> -> tensor<4x8xf32>, tensor<4x8xf32>
  return
}

// -----

// Top-k selection.

func.func @topk_dynamic_experts(%s: tensor<?x?xf32>) {
  // expected-error @+1 {{'moe.topk' op requires a static number of experts in the scores}}
  %w, %i = moe.topk %s k = 2 : tensor<?x?xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_k_too_large(%s: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.topk' op k (9) exceeds the number of experts (8)}}
  %w, %i = moe.topk %s k = 9 : tensor<?x8xf32> -> tensor<?x9xf32>, tensor<?x9xi32>
  return
}

// -----

func.func @topk_k_not_positive(%s: tensor<?x8xf32>) {
  // expected-error @+1 {{attribute 'k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %w, %i = moe.topk %s k = 0 : tensor<?x8xf32> -> tensor<?x0xf32>, tensor<?x0xi32>
  return
}

// -----

func.func @topk_groups_do_not_divide(%s: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.topk' op groups (3) do not divide the number of experts (8)}}
  %w, %i = moe.topk %s k = 2 groups = 3 : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_topk_groups_too_large(%s: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.topk' op topk_groups (3) exceeds groups (2)}}
  %w, %i = moe.topk %s k = 2 groups = 2 topk_groups = 3 : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_k_exceeds_kept_groups(%s: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.topk' op k (3) exceeds the 2 experts of the topk_groups (1) best groups of 2}}
  %w, %i = moe.topk %s k = 3 groups = 4 topk_groups = 1 : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @topk_top2_sum_singleton_groups(%s: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.topk' op group_score top2_sum needs at least 2 experts per group, got 1}}
  %w, %i = moe.topk %s k = 2 groups = 8 topk_groups = 4 group_score = top2_sum : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_bad_scaling(%s: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.topk' op scaling_factor must be positive and finite, got -1}}
  %w, %i = moe.topk %s k = 2 scaling_factor = -1.0 : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_negative_capacity(%s: tensor<?x8xf32>) {
  // expected-error @+1 {{attribute 'capacity' failed to satisfy constraint: 64-bit signless integer attribute whose value is non-negative}}
  %w, %i = moe.topk %s k = 1 capacity = -1 : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return
}

// -----

func.func @topk_bias_shape(%s: tensor<?x8xf32>, %b: tensor<7xf32>) {
  // expected-error @+1 {{'moe.topk' op selection bias has shape [7], expected [8]}}
  %w, %i = moe.topk %s bias %b : tensor<7xf32> k = 2 : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_weights_shape(%s: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.topk' op weights has shape [?, 3], expected [?, 2]}}
  %w, %i = moe.topk %s k = 2 : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_weights_element_type(%s: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.topk' op weights element type 'f16' does not match the scores's ('f32')}}
  %w, %i = moe.topk %s k = 2 : tensor<?x8xf32> -> tensor<?x2xf16>, tensor<?x2xi32>
  return
}

// -----

func.func @topk_indices_shape(%s: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.topk' op indices has shape [5, 2], expected [4, 2]}}
  %w, %i = moe.topk %s k = 2 : tensor<4x8xf32> -> tensor<4x2xf32>, tensor<5x2xi32>
  return
}

// -----

func.func @topk_indices_type(%s: tensor<4x8xf32>) {
  // expected-error @+1 {{'moe.topk' op result #1 must be 2D tensor of 32-bit signless integer values, but got 'tensor<4x2xi64>'}}
  %w, %i = moe.topk %s k = 2 : tensor<4x8xf32> -> tensor<4x2xf32>, tensor<4x2xi64>
  return
}

// -----

// Dispatch.

func.func @dispatch_slot_rows_shape(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op slot_rows has shape [?, 3], expected [?, 2]}}
  %r, %s, %o, %t = moe.dispatch %i experts = 8 : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x3xi32>, tensor<9xi32>, tensor<?xi32>
  return
}

// -----

func.func @dispatch_offsets_shape(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op expert_offsets has shape [8], expected [9]}}
  %r, %s, %o, %t = moe.dispatch %i experts = 8 : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x2xi32>, tensor<8xi32>, tensor<?xi32>
  return
}

// -----

func.func @dispatch_static_rows(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op sorted_slots must have a dynamic size}}
  %r, %s, %o, %t = moe.dispatch %i experts = 8 : tensor<?x2xi32> -> tensor<16xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>
  return
}

// -----

func.func @dispatch_static_tiles(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.dispatch' op tile_experts must have a dynamic size}}
  %r, %s, %o, %t = moe.dispatch %i experts = 8 : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<4xi32>
  return
}

// -----

func.func @dispatch_zero_tile(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{attribute 'tile_rows' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %r, %s, %o, %t = moe.dispatch %i experts = 8 tile_rows = 0 : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>
  return
}

// -----

// Expert FFN.

func.func @ffn_dynamic_experts(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                               %up: tensor<?x32x64xf32>, %down: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op requires a static number of experts in the expert up weight}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<?x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @ffn_up_hidden(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                         %up: tensor<8x32x60xf32>, %down: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op expert up weight has shape [8, 32, 60], expected [8, 32, 64]}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x32x60xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @ffn_gate_shape(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                          %gate: tensor<8x16x64xf32>, %up: tensor<8x32x64xf32>, %down: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op expert gate weight has shape [8, 16, 64], expected [8, 32, 64]}}
  %y = moe.expert_ffn %x, %r, %t, %w gate(%gate) up(%up) down(%down) activation = silu
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x16x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @ffn_down_shape(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                          %up: tensor<8x32x64xf32>, %down: tensor<8x32x64xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op expert down weight has shape [8, 32, 64], expected [8, 64, 32]}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @ffn_weights_tokens(%x: tensor<4x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<5x2xf32>,
                              %up: tensor<8x32x64xf32>, %down: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op weights has shape [5, 2], expected [4, ?]}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu
      : (tensor<4x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<5x2xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @ffn_output_shape(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                            %up: tensor<8x32x64xf32>, %down: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op output has shape [?, 32], expected [?, 64]}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x32xf32>
  return
}

// -----

func.func @ffn_output_type(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                           %up: tensor<8x32x64xf32>, %down: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op output element type 'bf16' does not match the input's ('f32')}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xbf16>
  return
}

// -----

func.func @ffn_packed_rank(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                           %up: tensor<8x32x64xf32>, %down: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op expert weights must have rank 4 (packed into panels), got 3}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu weight_panel = 8
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @ffn_packed_panels(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                             %up: tensor<8x4x64x8xf32>, %down: tensor<8x8x30x8xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op expert up weight has shape [8, 4, 64, 8], expected [8, 2, 64, 16]}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu weight_panel = 16
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x4x64x8xf32>, tensor<8x8x30x8xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @ffn_k_pack_value(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                            %up: tensor<8x4x16x32xbf16>, %down: tensor<8x8x16x16xbf16>) {
  // expected-error @+1 {{'moe.expert_ffn' op weight_k_pack must be 1 or 2, got 4}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu weight_panel = 8 weight_k_pack = 4
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x4x16x32xbf16>, tensor<8x8x16x16xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @ffn_k_pack_unpacked(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                               %up: tensor<8x32x64xbf16>, %down: tensor<8x64x32xbf16>) {
  // expected-error @+1 {{'moe.expert_ffn' op weight_k_pack needs weights packed into panels (weight_panel > 0)}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu weight_k_pack = 2
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x32x64xbf16>, tensor<8x64x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @ffn_k_pack_f32(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                          %up: tensor<8x4x32x16xf32>, %down: tensor<8x8x16x16xf32>) {
  // expected-error @+1 {{'moe.expert_ffn' op weight_k_pack = 2 needs bf16 weights}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu weight_panel = 8 weight_k_pack = 2
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x4x32x16xf32>, tensor<8x8x16x16xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @ffn_k_pack_odd(%x: tensor<?x63xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                          %up: tensor<8x4x31x16xbf16>, %down: tensor<8x8x16x16xbf16>) {
  // expected-error @+1 {{'moe.expert_ffn' op weight_k_pack = 2 needs even hidden and width sizes, got 63 and 32}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu weight_panel = 8 weight_k_pack = 2
      : (tensor<?x63xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x4x31x16xbf16>, tensor<8x8x16x16xbf16>) -> tensor<?x63xf32>
  return
}

// -----

func.func @ffn_k_pack_shape(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                            %up: tensor<8x4x64x8xbf16>, %down: tensor<8x8x16x16xbf16>) {
  // expected-error @+1 {{'moe.expert_ffn' op expert up weight has shape [8, 4, 64, 8], expected [8, 4, 32, 16]}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu weight_panel = 8 weight_k_pack = 2
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x4x64x8xbf16>, tensor<8x8x16x16xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @ffn_activation_type(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                               %up: tensor<8x32x64xf32>, %down: tensor<8x64x32xf32>) {
  // expected-error @+1 {{attribute 'activation_type' failed to satisfy constraint: type attribute of 32-bit float or bfloat16 type}}
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu activation_type = f16
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Shared expert.

func.func @shared_packed_rank(%x: tensor<?x64xf32>, %up: tensor<48x64xf32>, %down: tensor<64x48xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op shared expert weights must have rank 3 (packed into panels), got 2}}
  %y = moe.shared_expert %x up(%up) down(%down) activation = silu weight_panel = 8
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @shared_up_shape(%x: tensor<?x64xf32>, %up: tensor<48x32xf32>, %down: tensor<64x48xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op shared expert up weight has shape [48, 32], expected [48, 64]}}
  %y = moe.shared_expert %x up(%up) down(%down) activation = silu
      : (tensor<?x64xf32>, tensor<48x32xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @shared_gate_shape(%x: tensor<?x64xf32>, %gate: tensor<40x64xf32>, %up: tensor<48x64xf32>, %down: tensor<64x48xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op shared expert gate weight has shape [40, 64], expected [48, 64]}}
  %y = moe.shared_expert %x gate(%gate) up(%up) down(%down) activation = silu
      : (tensor<?x64xf32>, tensor<40x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @shared_down_shape(%x: tensor<?x64xf32>, %up: tensor<48x64xf32>, %down: tensor<48x64xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op shared expert down weight has shape [48, 64], expected [64, 48]}}
  %y = moe.shared_expert %x up(%up) down(%down) activation = silu
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<48x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @shared_sigmoid_gate_shape(%x: tensor<?x64xf32>, %up: tensor<48x64xf32>, %down: tensor<64x48xf32>, %g: tensor<2x64xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op shared expert sigmoid gate has shape [2, 64], expected [1, 64]}}
  %y = moe.shared_expert %x up(%up) down(%down) expert_gate(%g) activation = silu
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>, tensor<2x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @shared_output_shape(%x: tensor<4x64xf32>, %up: tensor<48x64xf32>, %down: tensor<64x48xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op output has shape [3, 64], expected [4, 64]}}
  %y = moe.shared_expert %x up(%up) down(%down) activation = silu
      : (tensor<4x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<3x64xf32>
  return
}

// -----

func.func @shared_output_type(%x: tensor<4x64xf32>, %up: tensor<48x64xf32>, %down: tensor<64x48xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op output element type 'f16' does not match the input's ('f32')}}
  %y = moe.shared_expert %x up(%up) down(%down) activation = silu
      : (tensor<4x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<4x64xf16>
  return
}

// -----

// Combine.

func.func @combine_addend_shape(%r: tensor<?x64xf32>, %s: tensor<4x2xi32>, %a: tensor<3x64xf32>) {
  // expected-error @+1 {{'moe.combine' op addend has shape [3, 64], expected [4, 64]}}
  %y = moe.combine %r, %s add %a : tensor<3x64xf32> : tensor<?x64xf32>, tensor<4x2xi32> -> tensor<4x64xf32>
  return
}

// -----

func.func @combine_addend_type(%r: tensor<?x64xf32>, %s: tensor<4x2xi32>, %a: tensor<4x64xf16>) {
  // expected-error @+1 {{'moe.combine' op addend element type 'f16' does not match the rows's ('f32')}}
  %y = moe.combine %r, %s add %a : tensor<4x64xf16> : tensor<?x64xf32>, tensor<4x2xi32> -> tensor<4x64xf32>
  return
}

// -----

func.func @combine_output_shape(%r: tensor<?x64xf32>, %s: tensor<4x2xi32>) {
  // expected-error @+1 {{'moe.combine' op output has shape [4, 32], expected [4, 64]}}
  %y = moe.combine %r, %s : tensor<?x64xf32>, tensor<4x2xi32> -> tensor<4x32xf32>
  return
}

// -----

func.func @combine_output_type(%r: tensor<?x64xf32>, %s: tensor<4x2xi32>) {
  // expected-error @+1 {{'moe.combine' op output element type 'bf16' does not match the rows's ('f32')}}
  %y = moe.combine %r, %s : tensor<?x64xf32>, tensor<4x2xi32> -> tensor<4x64xbf16>
  return
}

// -----

// Stats and auxiliary losses.

func.func @stats_dynamic(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{'moe.stats' op requires a static number of experts in the result}}
  %n = moe.stats %i : tensor<?x2xi32> -> tensor<?xi64>
  return
}

// -----

func.func @aux_loss_needs_indices(%l: tensor<?x8xf32>) {
  // expected-error @+1 {{'moe.aux_loss' op load_balancing needs the expert indices}}
  %z = moe.aux_loss load_balancing %l : tensor<?x8xf32> -> tensor<f32>
  return
}

// -----

func.func @aux_loss_indices_shape(%l: tensor<4x8xf32>, %i: tensor<5x2xi32>) {
  // expected-error @+1 {{'moe.aux_loss' op indices has shape [5, 2], expected [4, ?]}}
  %z = moe.aux_loss load_balancing %l, %i : tensor<5x2xi32> : tensor<4x8xf32> -> tensor<f32>
  return
}

// -----

// The whole layer: checks that only moe.layer has, and that it shares with
// the primitives through the same code.

func.func @layer_dynamic_experts(%x: tensor<?x64xf32>, %wr: tensor<?x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op requires a static number of experts in the router weight}}
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) scoring = softmax k = 2 activation = relu
      : (tensor<?x64xf32>, tensor<?x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}

// -----

func.func @layer_router_shape(%x: tensor<?x64xf32>, %wr: tensor<8x32xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op router weight has shape [8, 32], expected [8, 64]}}
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) scoring = softmax k = 2 activation = relu
      : (tensor<?x64xf32>, tensor<8x32xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}

// -----

func.func @layer_bias_shape(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %b: tensor<4xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op selection bias has shape [4], expected [8]}}
  %y, %n = moe.layer %x router(%wr, bias %b) experts(up %u, down %d) scoring = sigmoid k = 2 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<4xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}

// -----

func.func @layer_k_too_large(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op k (9) exceeds the number of experts (8)}}
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) scoring = softmax k = 9 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}

// -----

func.func @layer_expert_count(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<4x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op expert up weight has shape [4, 32, 64], expected [8, 32, 64]}}
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) scoring = softmax k = 2 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<4x32x64xf32>, tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}

// -----

func.func @layer_shared_pair(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_up and shared_down must be given together}}
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) shared_up %su scoring = softmax k = 2 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<48x64xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}

// -----

func.func @layer_shared_gate_alone(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<48x64xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_gate requires shared_up and shared_down}}
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) shared_gate %sg scoring = softmax k = 2 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<48x64xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}

// -----

func.func @layer_sigmoid_gate_alone(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %g: tensor<1x64xf32>) {
  // expected-error @+1 {{'moe.layer' op shared_expert_gate requires shared_up and shared_down}}
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) shared_expert_gate %g scoring = softmax k = 2 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<1x64xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}

// -----

func.func @layer_shared_shape(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>, %sd: tensor<64x40xf32>) {
  // expected-error @+1 {{'moe.layer' op shared expert down weight has shape [64, 40], expected [64, 48]}}
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) shared_up %su shared_down %sd scoring = softmax k = 2 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<48x64xf32>, tensor<64x40xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}

// -----

func.func @layer_output_shape(%x: tensor<4x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op output has shape [5, 64], expected [4, 64]}}
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) scoring = softmax k = 2 activation = relu
      : (tensor<4x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> (tensor<5x64xf32>, tensor<8xi64>)
  return
}

// -----

func.func @layer_output_type(%x: tensor<4x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op output element type 'bf16' does not match the input's ('f32')}}
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) scoring = softmax k = 2 activation = relu
      : (tensor<4x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> (tensor<4x64xbf16>, tensor<8xi64>)
  return
}

// -----

func.func @layer_stats_shape(%x: tensor<4x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{'moe.layer' op tokens_per_expert has shape [7], expected [8]}}
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) scoring = softmax k = 2 activation = relu
      : (tensor<4x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> (tensor<4x64xf32>, tensor<7xi64>)
  return
}

// -----

func.func @schedule_not_positive(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{vector_width, row_block, col_block and pair_row_block must be positive, got 8, 0, 2, 4}}
  %l, %s = moe.router %x, %w scoring = softmax {schedule = #moe.cpu_schedule<row_block = 0>}
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return
}

// -----

func.func @schedule_negative_streaming(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) {
  // expected-error @+1 {{streaming_rows must not be negative, got -1}}
  %l, %s = moe.router %x, %w scoring = softmax {schedule = #moe.cpu_schedule<streaming_rows = -1>}
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return
}

// -----

func.func @shared_k_pack_f32(%x: tensor<?x64xf32>, %up: tensor<6x32x16xf32>, %down: tensor<8x24x16xf32>) {
  // expected-error @+1 {{'moe.shared_expert' op weight_k_pack = 2 needs bf16 weights}}
  %y = moe.shared_expert %x up(%up) down(%down) activation = silu weight_panel = 8 weight_k_pack = 2
      : (tensor<?x64xf32>, tensor<6x32x16xf32>, tensor<8x24x16xf32>) -> tensor<?x64xf32>
  return
}
