func.func @router_hidden_mismatch(%x: tensor<?x64xf32>, %w: tensor<8x32xf32>) {
  %l, %s = moe.router %x, %w scoring = softmax : tensor<?x64xf32>, tensor<8x32xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return
}
