func.func @combine_addend_type(%r: tensor<?x64xf32>, %s: tensor<4x2xi32>, %a: tensor<4x64xf16>) {
  %y = moe.combine %r, %s add %a : tensor<4x64xf16> : tensor<?x64xf32>, tensor<4x2xi32> -> tensor<4x64xf32>
  return
}
