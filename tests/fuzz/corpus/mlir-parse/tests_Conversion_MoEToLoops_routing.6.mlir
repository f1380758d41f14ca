func.func @aux_losses(%l: tensor<?x8xf32>, %i: tensor<?x2xi32>) -> (tensor<f32>, tensor<f32>) {
  %lb = moe.aux_loss load_balancing %l, %i : tensor<?x2xi32> : tensor<?x8xf32> -> tensor<f32>
  %z = moe.aux_loss z_loss %l : tensor<?x8xf32> -> tensor<f32>
  return %lb, %z : tensor<f32>, tensor<f32>
}
