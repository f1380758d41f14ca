func.func @dispatch_zero_tile(%i: tensor<?x2xi32>) {
  %r, %s, %o, %t = moe.dispatch %i experts = 8 tile_rows = 0 : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>
  return
}
