func.func @ffn_packed_panels(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                             %up: tensor<8x4x64x8xf32>, %down: tensor<8x8x30x8xf32>) {
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu weight_panel = 16
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x4x64x8xf32>, tensor<8x8x30x8xf32>) -> tensor<?x64xf32>
  return
}
