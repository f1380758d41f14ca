func.func @topk_k_exceeds_kept_groups(%s: tensor<?x8xf32>) {
  %w, %i = moe.topk %s k = 3 groups = 4 topk_groups = 1 : tensor<?x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}
