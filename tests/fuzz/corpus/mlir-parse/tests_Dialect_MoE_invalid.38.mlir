func.func @shared_sigmoid_gate_shape(%x: tensor<?x64xf32>, %up: tensor<48x64xf32>, %down: tensor<64x48xf32>, %g: tensor<2x64xf32>) {
  %y = moe.shared_expert %x up(%up) down(%down) expert_gate(%g) activation = silu
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>, tensor<2x64xf32>) -> tensor<?x64xf32>
  return
}
