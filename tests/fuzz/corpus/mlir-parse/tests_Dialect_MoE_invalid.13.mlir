func.func @topk_bad_scaling(%s: tensor<?x8xf32>) {
  %w, %i = moe.topk %s k = 2 scaling_factor = -1.0 : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}
