func.func @combine_output_shape(%r: tensor<?x64xf32>, %s: tensor<4x2xi32>) {
  %y = moe.combine %r, %s : tensor<?x64xf32>, tensor<4x2xi32> -> tensor<4x32xf32>
  return
}
