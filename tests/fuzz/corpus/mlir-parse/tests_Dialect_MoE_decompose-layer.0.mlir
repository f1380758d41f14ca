func.func @mixtral(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>, %w1: tensor<8x32x64xf32>,
                   %w3: tensor<8x32x64xf32>, %w2: tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>) {
  %y, %n = moe.layer %x router(%wr) experts(up %w3, down %w2, gate %w1)
      scoring = softmax k = 2 renormalize activation = silu tile_rows = 4
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
         tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<8xi64>)
  return %y, %n : tensor<?x64xf32>, tensor<8xi64>
}
