func.func @combine_output_type(%r: tensor<?x64xf32>, %s: tensor<4x2xi32>) {
  %y = moe.combine %r, %s : tensor<?x64xf32>, tensor<4x2xi32> -> tensor<4x64xbf16>
  return
}
