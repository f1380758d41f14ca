func.func @topk_bias_shape(%s: tensor<?x8xf32>, %b: tensor<7xf32>) {
  %w, %i = moe.topk %s bias %b : tensor<7xf32> k = 2 : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}
