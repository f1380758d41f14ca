func.func @shared_down_shape(%x: tensor<?x64xf32>, %up: tensor<48x64xf32>, %down: tensor<48x64xf32>) {
  %y = moe.shared_expert %x up(%up) down(%down) activation = silu
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<48x64xf32>) -> tensor<?x64xf32>
  return
}
