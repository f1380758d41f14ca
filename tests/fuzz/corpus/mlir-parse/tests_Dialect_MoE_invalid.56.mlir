func.func @layer_shared_shape(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>, %sd: tensor<64x40xf32>) {
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) shared_up %su shared_down %sd scoring = softmax k = 2 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<48x64xf32>, tensor<64x40xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}
