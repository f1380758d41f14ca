func.func @ffn_packed_rank(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                           %up: tensor<8x32x64xf32>, %down: tensor<8x64x32xf32>) {
  %y = moe.expert_ffn %x, %r, %t, %w up(%up) down(%down) activation = relu weight_panel = 8
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}
