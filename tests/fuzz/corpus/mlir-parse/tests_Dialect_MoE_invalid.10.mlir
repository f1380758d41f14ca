func.func @topk_topk_groups_too_large(%s: tensor<?x8xf32>) {
  %w, %i = moe.topk %s k = 2 groups = 2 topk_groups = 3 : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}
