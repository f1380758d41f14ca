func.func @topk_groups_do_not_divide(%s: tensor<?x8xf32>) {
  %w, %i = moe.topk %s k = 2 groups = 3 : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}
