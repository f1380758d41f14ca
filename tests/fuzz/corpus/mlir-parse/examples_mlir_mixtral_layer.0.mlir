module attributes {moe.family = "mixtral"} {
  func.func @moe_forward(
      %x: tensor<?x64xf32>,
      %router: tensor<8x64xf32> {moe.weight = "gate.weight"},
      %w1: tensor<8x48x64xf32> {moe.weight = "experts.{e}.w1.weight"},
      %w3: tensor<8x48x64xf32> {moe.weight = "experts.{e}.w3.weight"},
      %w2: tensor<8x64x48xf32> {moe.weight = "experts.{e}.w2.weight"})
      -> (tensor<?x64xf32>, tensor<8xi64>) {
    %y, %load = moe.layer %x router(%router) experts(up %w3, down %w2, gate %w1)
        scoring = softmax k = 2 renormalize activation = silu
        : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x48x64xf32>,
           tensor<8x48x64xf32>, tensor<8x64x48xf32>)
        -> (tensor<?x64xf32>, tensor<8xi64>)
    return %y, %load : tensor<?x64xf32>, tensor<8xi64>
  }
}
