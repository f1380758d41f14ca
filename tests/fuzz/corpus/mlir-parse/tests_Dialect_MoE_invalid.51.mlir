func.func @layer_k_too_large(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) scoring = softmax k = 9 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}
