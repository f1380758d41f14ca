func.func @stats_dynamic(%i: tensor<?x2xi32>) {
  %n = moe.stats %i : tensor<?x2xi32> -> tensor<?xi64>
  return
}
