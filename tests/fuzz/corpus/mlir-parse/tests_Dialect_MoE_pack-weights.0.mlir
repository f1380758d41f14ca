func.func @ffn(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
               %g: tensor<8x45x64xf32>, %u: tensor<8x45x64xf32>, %d: tensor<8x64x45xf32>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %x, %r, %t, %w gate(%g) up(%u) down(%d) activation = silu
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x45x64xf32>,
         tensor<8x45x64xf32>, tensor<8x64x45xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
