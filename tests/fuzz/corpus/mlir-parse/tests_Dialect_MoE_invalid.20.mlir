func.func @dispatch_slot_rows_shape(%i: tensor<?x2xi32>) {
  %r, %s, %o, %t = moe.dispatch %i experts = 8 : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x3xi32>, tensor<9xi32>, tensor<?xi32>
  return
}
