func.func @topk_negative_capacity(%s: tensor<?x8xf32>) {
  %w, %i = moe.topk %s k = 1 capacity = -1 : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return
}
