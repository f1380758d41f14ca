func.func @router_bad_scoring(%x: tensor<4x64xf32>, %w: tensor<8x64xf32>) {
  %l, %s = moe.router %x, %w scoring = tanh : tensor<4x64xf32>, tensor<8x64xf32> -> tensor<4x8xf32>, tensor<4x8xf32>
  return
}
