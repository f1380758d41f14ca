func.func @layer_shared_gate_alone(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<48x64xf32>) {
  %y, %n = moe.layer %x router(%wr) experts(up %u, down %d) shared_gate %sg scoring = softmax k = 2 activation = relu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<48x64xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return
}
