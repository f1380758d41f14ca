func.func @router_scores_shape(%x: tensor<4x64xf32>, %w: tensor<8x64xf32>) {
  %l, %s = moe.router %x, %w scoring = softmax : tensor<4x64xf32>, tensor<8x64xf32> -> tensor<4x8xf32>, tensor<4x7xf32>
  return
}
