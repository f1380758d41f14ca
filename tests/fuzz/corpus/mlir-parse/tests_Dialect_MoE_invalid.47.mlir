func.func @aux_loss_indices_shape(%l: tensor<4x8xf32>, %i: tensor<5x2xi32>) {
  %z = moe.aux_loss load_balancing %l, %i : tensor<5x2xi32> : tensor<4x8xf32> -> tensor<f32>
  return
}
