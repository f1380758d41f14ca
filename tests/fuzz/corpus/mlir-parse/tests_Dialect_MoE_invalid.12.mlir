func.func @topk_top2_sum_singleton_groups(%s: tensor<?x8xf32>) {
  %w, %i = moe.topk %s k = 2 groups = 8 topk_groups = 4 group_score = top2_sum : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}
