func.func @ffn_gate_shape(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                          %gate: tensor<8x16x64xf32>, %up: tensor<8x32x64xf32>, %down: tensor<8x64x32xf32>) {
  %y = moe.expert_ffn %x, %r, %t, %w gate(%gate) up(%up) down(%down) activation = silu
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x16x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return
}
