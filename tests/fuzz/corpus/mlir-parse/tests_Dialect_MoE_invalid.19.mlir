func.func @topk_indices_type(%s: tensor<4x8xf32>) {
  %w, %i = moe.topk %s k = 2 : tensor<4x8xf32> -> tensor<4x2xf32>, tensor<4x2xi64>
  return
}
