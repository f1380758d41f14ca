// A small Mixtral-style MoE block: 8 SwiGLU experts, top-2 of a softmax,
// weights renormalised over the two. Try:
//   build/bin/moe-opt examples/mlir/mixtral_layer.mlir --moe-decompose-layer
func.func @moe_forward(%x: tensor<?x64xf32>, %router: tensor<8x64xf32>,
                       %w1: tensor<8x32x64xf32>, %w3: tensor<8x32x64xf32>,
                       %w2: tensor<8x64x32xf32>)
    -> (tensor<?x64xf32>, tensor<8xi64>) {
  %y, %load = moe.layer %x router(%router) experts(up %w3, down %w2, gate %w1)
      scoring = softmax k = 2 renormalize activation = silu
      : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>,
         tensor<8x32x64xf32>, tensor<8x64x32xf32>)
      -> (tensor<?x64xf32>, tensor<8xi64>)
  return %y, %load : tensor<?x64xf32>, tensor<8xi64>
}
