func.func @moe_forward(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32> {moe.weight = "gate.weight"},
                       %u: tensor<8x32x64xf32> {moe.weight = "experts.{e}.up_proj.weight"},
                       %d: tensor<8x64x32xf32> {moe.weight = "experts.{e}.down_proj.weight"})
    -> (tensor<?x64xf32>, tensor<8xi64>) {
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d)
      scoring = softmax k = 9 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>)
      -> (tensor<?x64xf32>, tensor<8xi64>)
  return %y, %n : tensor<?x64xf32>, tensor<8xi64>
}
