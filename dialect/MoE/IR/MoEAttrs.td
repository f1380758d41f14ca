//===- MoEAttrs.td - Attributes of the moe dialect ---------*- tablegen -*-===//

#ifndef MOE_DIALECT_MOE_IR_MOEATTRS_TD
#define MOE_DIALECT_MOE_IR_MOEATTRS_TD

include "dialect/MoE/IR/MoEDialect.td"
include "mlir/IR/AttrTypeBase.td"

def MoE_CPUScheduleAttr : AttrDef<MoE_Dialect, "CPUSchedule"> {
  let mnemonic = "cpu_schedule";
  let summary = "how the CPU lowering blocks an MoE block's matmuls";
  let description = [{
    Schedule choices of `convert-moe-to-loops`, kept as data so that a tuner
    can sweep them: `vector_width` f32 lanes per vector register (and the
    panel width the weights are packed with), `row_block` activation rows
    and `col_block` vectors of outputs per register block,
    `streaming_rows`, the most rows a tile may have and still run the
    weight-streaming kernel (the regime crossover, picked per tile at run
    time), and `pair_row_block`, the rows per register block over
    pair-packed bf16 weights (`weight_k_pack = 2`), whose widened halves
    need registers of their own. Omitted parameters take their defaults.

    ```mlir
    #moe.cpu_schedule<vector_width = 16, row_block = 12>
    ```
  }];
  let parameters = (ins
    DefaultValuedParameter<"int64_t", "8">:$vector_width,
    DefaultValuedParameter<"int64_t", "6">:$row_block,
    DefaultValuedParameter<"int64_t", "2">:$col_block,
    DefaultValuedParameter<"int64_t", "2">:$streaming_rows,
    DefaultValuedParameter<"int64_t", "4">:$pair_row_block
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

#endif // MOE_DIALECT_MOE_IR_MOEATTRS_TD
