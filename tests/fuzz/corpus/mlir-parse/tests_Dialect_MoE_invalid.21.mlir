func.func @dispatch_offsets_shape(%i: tensor<?x2xi32>) {
  %r, %s, %o, %t = moe.dispatch %i experts = 8 : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x2xi32>, tensor<8xi32>, tensor<?xi32>
  return
}
