func.func @dispatch_static_rows(%i: tensor<?x2xi32>) {
  %r, %s, %o, %t = moe.dispatch %i experts = 8 : tensor<?x2xi32> -> tensor<16xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>
  return
}
