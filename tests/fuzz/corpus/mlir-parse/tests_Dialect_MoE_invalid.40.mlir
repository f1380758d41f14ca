func.func @shared_output_type(%x: tensor<4x64xf32>, %up: tensor<48x64xf32>, %down: tensor<64x48xf32>) {
  %y = moe.shared_expert %x up(%up) down(%down) activation = silu
      : (tensor<4x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<4x64xf16>
  return
}
