func.func @layer_bias_shape(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %b: tensor<4xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  %y, %n = moe.layer %x router(%wr, bias %b) experts(up %u, down %d) scoring = sigmoid k = 2 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<4xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}
