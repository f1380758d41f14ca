func.func @combine_addend_shape(%r: tensor<?x64xf32>, %s: tensor<4x2xi32>, %a: tensor<3x64xf32>) {
  %y = moe.combine %r, %s add %a : tensor<3x64xf32> : tensor<?x64xf32>, tensor<4x2xi32> -> tensor<4x64xf32>
  return
}
