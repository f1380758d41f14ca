func.func @topk_k_too_large(%s: tensor<?x8xf32>) {
  %w, %i = moe.topk %s k = 9 : tensor<?x8xf32> -> tensor<?x9xf32>, tensor<?x9xi32>
  return
}
