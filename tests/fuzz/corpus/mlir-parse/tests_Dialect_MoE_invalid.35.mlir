func.func @shared_up_shape(%x: tensor<?x64xf32>, %up: tensor<48x32xf32>, %down: tensor<64x48xf32>) {
  %y = moe.shared_expert %x up(%up) down(%down) activation = silu
      : (tensor<?x64xf32>, tensor<48x32xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
  return
}
