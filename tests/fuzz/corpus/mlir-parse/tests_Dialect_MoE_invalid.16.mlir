func.func @topk_weights_shape(%s: tensor<?x8xf32>) {
  %w, %i = moe.topk %s k = 2 : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x2xi32>
  return
}
