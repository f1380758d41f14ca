func.func @router_sigmoid(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) -> tensor<?x8xf32> {
  %l, %s = moe.router %x, %w scoring = sigmoid
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return %s : tensor<?x8xf32>
}
