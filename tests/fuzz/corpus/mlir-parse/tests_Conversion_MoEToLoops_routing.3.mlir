func.func @topk_grouped(%s: tensor<?x16xf32>, %b: tensor<16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  %w, %i = moe.topk %s bias %b : tensor<16xf32> k = 4 groups = 4 topk_groups = 2
      group_score = top2_sum renormalize scaling_factor = 2.5
      : tensor<?x16xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
  return %w, %i : tensor<?x4xf32>, tensor<?x4xi32>
}
