func.func @topk_dynamic_experts(%s: tensor<?x?xf32>) {
  %w, %i = moe.topk %s k = 2 : tensor<?x?xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}
