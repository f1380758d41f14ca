func.func @dispatch(%i: tensor<?x2xi32>) -> (tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>) {
  %r, %s, %o, %t = moe.dispatch %i experts = 8 tile_rows = 4
      : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>
  return %r, %s, %o, %t : tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>
}

func.func @expert_ffn(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                      %g: tensor<8x32x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %x, %r, %t, %w gate(%g) up(%u) down(%d) activation = silu tile_rows = 4
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>,
         tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

func.func @shared_expert_gelu(%x: tensor<?x64xf32>, %u: tensor<48x64xf32>, %d: tensor<64x48xf32>,
                              %g: tensor<1x64xf32>) -> tensor<?x64xf32> {
  %y = moe.shared_expert %x up(%u) down(%d) expert_gate(%g) activation = gelu
      : (tensor<?x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

func.func @combine(%rows: tensor<?x64xf32>, %sr: tensor<?x2xi32>, %a: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %y = moe.combine %rows, %sr add %a : tensor<?x64xf32> : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

func.func @expert_ffn_packed(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                             %g: tensor<8x6x64x8xf32>, %u: tensor<8x6x64x8xf32>,
                             %d: tensor<8x8x45x8xf32>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %x, %r, %t, %w gate(%g) up(%u) down(%d) activation = silu tile_rows = 4
      weight_panel = 8
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x6x64x8xf32>,
         tensor<8x6x64x8xf32>, tensor<8x8x45x8xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

func.func @expert_ffn_scheduled(%x: tensor<?x64xf32>, %r: tensor<?xi32>, %t: tensor<?xi32>, %w: tensor<?x2xf32>,
                                %u: tensor<8x3x64x16xf32>, %d: tensor<8x4x45x16xf32>) -> tensor<?x64xf32> {
  %y = moe.expert_ffn %x, %r, %t, %w up(%u) down(%d) activation = relu tile_rows = 4
      weight_panel = 16 {schedule = #moe.cpu_schedule<vector_width = 16, row_block = 4>}
      : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>, tensor<8x3x64x16xf32>,
         tensor<8x4x45x16xf32>) -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
