func.func @schedule_negative_streaming(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) {
  %l, %s = moe.router %x, %w scoring = softmax {schedule = #moe.cpu_schedule<streaming_rows = -1>}
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return
}
