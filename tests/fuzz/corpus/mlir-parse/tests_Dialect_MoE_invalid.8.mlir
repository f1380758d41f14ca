func.func @topk_k_not_positive(%s: tensor<?x8xf32>) {
  %w, %i = moe.topk %s k = 0 : tensor<?x8xf32> -> tensor<?x0xf32>, tensor<?x0xi32>
  return
}
