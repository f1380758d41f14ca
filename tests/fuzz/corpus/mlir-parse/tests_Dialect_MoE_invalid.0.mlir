func.func @router_dynamic_experts(%x: tensor<?x64xf32>, %w: tensor<?x64xf32>) {
  %l, %s = moe.router %x, %w scoring = softmax : tensor<?x64xf32>, tensor<?x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return
}
