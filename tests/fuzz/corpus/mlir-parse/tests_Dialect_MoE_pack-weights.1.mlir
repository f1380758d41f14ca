func.func @shared_use(%x: tensor<?x64xf32>, %u: tensor<48x64xf32>, %d: tensor<64x48xf32>)
    -> (tensor<?x64xf32>, tensor<48x64xf32>) {
  %y = moe.shared_expert %x up(%u) down(%d) activation = silu
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
  return %y, %u : tensor<?x64xf32>, tensor<48x64xf32>
}
