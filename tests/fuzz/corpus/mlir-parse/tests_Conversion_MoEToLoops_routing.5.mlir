func.func @stats(%i: tensor<?x2xi32>) -> tensor<8xi64> {
  %n = moe.stats %i : tensor<?x2xi32> -> tensor<8xi64>
  return %n : tensor<8xi64>
}
