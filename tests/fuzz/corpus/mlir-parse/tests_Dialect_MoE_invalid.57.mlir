func.func @layer_output_shape(%x: tensor<4x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) scoring = softmax k = 2 activation = relu
      : (tensor<4x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> (tensor<5x64xf32>, tensor<8xi64>)
  return
}
