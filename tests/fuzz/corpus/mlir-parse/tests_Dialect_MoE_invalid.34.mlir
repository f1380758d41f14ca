func.func @shared_packed_rank(%x: tensor<?x64xf32>, %up: tensor<48x64xf32>, %down: tensor<64x48xf32>) {
  %y = moe.shared_expert %x up(%up) down(%down) activation = silu weight_panel = 8
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
  return
}
