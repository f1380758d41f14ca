func.func @deepseek_v3_like(%x: tensor<3x64xf32>, %wr: tensor<16x64xf32>, %b: tensor<16xf32>,
                            %wu: tensor<16x32x64xf32>, %wd: tensor<16x64x32xf32>,
                            %sg: tensor<32x64xf32>, %su: tensor<32x64xf32>, %sd: tensor<64x32xf32>,
                            %g: tensor<1x64xf32>) -> (tensor<3x64xf32>, tensor<16xi64>) {
  %y, %n = moe.layer %x router(%wr, bias %b) experts(up %wu, down %wd)
      shared_gate %sg shared_up %su shared_down %sd shared_expert_gate %g
      scoring = sigmoid k = 4 groups = 4 topk_groups = 2 group_score = top2_sum
      renormalize scaling_factor = 2.5 capacity = 7 activation = gelu
      : (tensor<3x64xf32>, tensor<16x64xf32>, tensor<16xf32>, tensor<16x32x64xf32>,
         tensor<16x64x32xf32>, tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x32xf32>,
         tensor<1x64xf32>) -> (tensor<3x64xf32>, tensor<16xi64>)
  return %y, %n : tensor<3x64xf32>, tensor<16xi64>
}
