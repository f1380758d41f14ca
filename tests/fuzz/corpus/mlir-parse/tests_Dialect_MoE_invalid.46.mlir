func.func @aux_loss_needs_indices(%l: tensor<?x8xf32>) {
  %z = moe.aux_loss load_balancing %l : tensor<?x8xf32> -> tensor<f32>
  return
}
