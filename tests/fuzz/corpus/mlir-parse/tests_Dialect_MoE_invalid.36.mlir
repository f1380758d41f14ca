func.func @shared_gate_shape(%x: tensor<?x64xf32>, %gate: tensor<40x64xf32>, %up: tensor<48x64xf32>, %down: tensor<64x48xf32>) {
  %y = moe.shared_expert %x gate(%gate) up(%up) down(%down) activation = silu
      : (tensor<?x64xf32>, tensor<40x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>) -> tensor<?x64xf32>
  return
}
