func.func @topk_indices_shape(%s: tensor<4x8xf32>) {
  %w, %i = moe.topk %s k = 2 : tensor<4x8xf32> -> tensor<4x2xf32>, tensor<5x2xi32>
  return
}
