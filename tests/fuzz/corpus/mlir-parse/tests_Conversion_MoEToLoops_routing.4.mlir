func.func @topk_capacity(%s: tensor<?x8xf32>) -> (tensor<?x1xf32>, tensor<?x1xi32>) {
  %w, %i = moe.topk %s k = 1 capacity = 3 : tensor<?x8xf32> -> tensor<?x1xf32>, tensor<?x1xi32>
  return %w, %i : tensor<?x1xf32>, tensor<?x1xi32>
}
