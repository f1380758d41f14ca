//===- MoEOps.td - Operations of the moe dialect -----------*- tablegen -*-===//

#ifndef MOE_DIALECT_MOE_IR_MOEOPS_TD
#define MOE_DIALECT_MOE_IR_MOEOPS_TD

include "dialect/MoE/IR/MoEAttrs.td"
include "dialect/MoE/IR/MoEDialect.td"
include "dialect/MoE/IR/MoEEnums.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/IR/CommonTypeConstraints.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Type and attribute constraints
//===----------------------------------------------------------------------===//

def MoE_FloatTensor2D : 2DTensorOf<[F32, BF16, F16]>;
def MoE_FloatTensor1D : 1DTensorOf<[F32, BF16, F16]>;
def MoE_FloatTensor3D : 3DTensorOf<[F32, BF16, F16]>;
def MoE_IndexTensor1D : 1DTensorOf<[I32]>;
def MoE_IndexTensor2D : 2DTensorOf<[I32]>;
def MoE_CountTensor : 1DTensorOf<[I64]>;
/// A weight in PyTorch layout, or packed into panels (rank + 1).
def MoE_WeightTensor : RankedTensorOf<[F32, BF16, F16]>;

def MoE_PositiveI64 : ConfinedAttr<I64Attr, [IntPositive]>;
/// The element type the expert matmuls multiply activations in: with bf16,
/// `x` and the hidden activations are rounded to bf16 before they are
/// multiplied; products are summed in f32 either way. Absent: the target's
/// own (f32 on the CPU; the GPU's tensor cores multiply bf16, and reject an
/// explicit f32).
def MoE_ActivationType : TypeAttrOf<AnyTypeOf<[F32, BF16]>>;
def MoE_NonNegativeI64 : ConfinedAttr<I64Attr, [IntNonNegative]>;

//===----------------------------------------------------------------------===//
// moe.layer
//===----------------------------------------------------------------------===//

def MoE_LayerOp : MoE_Op<"layer", [Pure, AttrSizedOperandSegments]> {
  let summary = "a whole Mixture-of-Experts block";
  let description = [{
    One MoE block: router, expert selection, routed experts, optional shared
    experts and the weighted combine. Every routing variant is an attribute:

    - `scoring`: `softmax` or `sigmoid` of the router logits `x · routerᵀ`;
    - `k`: experts per token; `groups`/`topk_groups`: group-limited selection
      (experts split into `groups` equal groups, each scored by `group_score`,
      `max` or `top2_sum`; only experts of the best `topk_groups` groups are
      eligible); `selection_bias` (optional operand, `[experts]`) is added to
      the scores for selection only;
    - `renormalize`: the k weights are divided by their sum; `scaling_factor`
      then multiplies them;
    - `capacity` (0 = none): at most this many tokens per expert, filled in
      token order; a token over an expert's capacity gets nothing from it;
    - `activation`: the experts' activation; the experts are gated (GLU,
      `down(act(gate x) * up x)`) when `expert_gate` is present, plain
      (`down(act(up x))`) otherwise;
    - shared experts (`shared_up`/`shared_down`, optional `shared_gate`) run on
      every token; `shared_expert_gate` (`[1, hidden]`) scales them by
      `sigmoid(x · shared_expert_gate)`;
    - `tile_rows`: the row-tile height of the block-aligned dispatch plan;
    - `schedule` (optional, `#moe.cpu_schedule<...>`): the register blocking
      of the CPU lowering, passed on to the primitives that run matmuls;
    - `activation_type` (optional, `f32` or `bf16`): what the expert matmuls
      multiply activations in (see `moe.expert_ffn`).

    Results: the block's output `[tokens, hidden]` and the number of token
    slots routed to each expert (`[experts]`, dropped slots not counted).

    ```mlir
    %y, %load = moe.layer %x router(%wr) experts(up %w3, down %w2, gate %w1)
        scoring = softmax k = 2 renormalize activation = silu
        : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>,
           tensor<8x32x64xf32>, tensor<8x64x32xf32>)
        -> (tensor<?x64xf32>, tensor<8xi64>)
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor2D:$input,
    MoE_FloatTensor2D:$router_weight,
    Optional<MoE_FloatTensor1D>:$selection_bias,
    Optional<MoE_FloatTensor3D>:$expert_gate,
    MoE_FloatTensor3D:$expert_up,
    MoE_FloatTensor3D:$expert_down,
    Optional<MoE_FloatTensor2D>:$shared_gate,
    Optional<MoE_FloatTensor2D>:$shared_up,
    Optional<MoE_FloatTensor2D>:$shared_down,
    Optional<MoE_FloatTensor2D>:$shared_expert_gate,
    MoE_ScoringFunc:$scoring,
    MoE_PositiveI64:$k,
    DefaultValuedAttr<MoE_PositiveI64, "1">:$groups,
    DefaultValuedAttr<MoE_PositiveI64, "1">:$topk_groups,
    DefaultValuedAttr<MoE_GroupScore, "::mlir::moe::GroupScore::max">:$group_score,
    UnitAttr:$renormalize,
    DefaultValuedAttr<F64Attr, "1.0">:$scaling_factor,
    DefaultValuedAttr<MoE_NonNegativeI64, "0">:$capacity,
    MoE_Activation:$activation,
    DefaultValuedAttr<MoE_PositiveI64, "16">:$tile_rows,
    OptionalAttr<MoE_ActivationType>:$activation_type,
    OptionalAttr<MoE_CPUScheduleAttr>:$schedule
  );
  let results = (outs MoE_FloatTensor2D:$output, MoE_CountTensor:$tokens_per_expert);
  let assemblyFormat = [{
    $input `router` `(` $router_weight (`,` `bias` $selection_bias^)? `)`
    `experts` `(` `up` $expert_up `,` `down` $expert_down (`,` `gate` $expert_gate^)? `)`
    (`shared_gate` $shared_gate^)? (`shared_up` $shared_up^)?
    (`shared_down` $shared_down^)? (`shared_expert_gate` $shared_expert_gate^)?
    `scoring` `=` $scoring `k` `=` $k
    (`groups` `=` $groups^)? (`topk_groups` `=` $topk_groups^)?
    (`group_score` `=` $group_score^)? (`renormalize` $renormalize^)?
    (`scaling_factor` `=` $scaling_factor^)? (`capacity` `=` $capacity^)?
    `activation` `=` $activation (`tile_rows` `=` $tile_rows^)?
    (`activation_type` `=` $activation_type^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getNumExperts();
    int64_t getHiddenSize();
  }];
}

//===----------------------------------------------------------------------===//
// Primitives
//===----------------------------------------------------------------------===//

def MoE_RouterOp : MoE_Op<"router", [Pure]> {
  let summary = "router logits and expert scores";
  let description = [{
    `logits = input · weightᵀ` (`[tokens, experts]`), and
    `scores = softmax(logits)` along the experts, or `sigmoid(logits)`
    element-wise, as `scoring` says.

    ```mlir
    %logits, %scores = moe.router %x, %wr scoring = softmax
        : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor2D:$input, MoE_FloatTensor2D:$weight,
                       MoE_ScoringFunc:$scoring,
                       OptionalAttr<MoE_CPUScheduleAttr>:$schedule);
  let results = (outs MoE_FloatTensor2D:$logits, MoE_FloatTensor2D:$scores);
  let assemblyFormat = [{
    $input `,` $weight `scoring` `=` $scoring attr-dict `:` type($input) `,`
    type($weight) `->` type($logits) `,` type($scores)
  }];
  let hasVerifier = 1;
}

def MoE_TopKOp : MoE_Op<"topk", [Pure]> {
  let summary = "expert selection and routing weights";
  let description = [{
    Selects `k` experts per token from `scores` (`[tokens, experts]`) and
    computes their routing weights.

    1. Selection scores are `scores + selection_bias` (bias optional).
    2. With `groups > 1`, the experts form `groups` equal consecutive groups;
       each group is scored by `group_score` (`max`: its best selection score;
       `top2_sum`: the sum of its two best) and only the experts of the
       `topk_groups` best groups are eligible.
    3. The `k` eligible experts with the highest selection scores are chosen,
       in descending order of score; ties go to the lower expert index.
    4. The weights are the unbiased `scores` of the chosen experts, divided by
       their sum when `renormalize` is set, then multiplied by
       `scaling_factor`.
    5. With `capacity > 0`, tokens are visited in order and each expert keeps
       only its first `capacity` slots; a slot over capacity gets index -1 and
       weight 0.

    ```mlir
    %w, %idx = moe.topk %scores k = 2 renormalize
        : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor2D:$scores,
    Optional<MoE_FloatTensor1D>:$selection_bias,
    MoE_PositiveI64:$k,
    DefaultValuedAttr<MoE_PositiveI64, "1">:$groups,
    DefaultValuedAttr<MoE_PositiveI64, "1">:$topk_groups,
    DefaultValuedAttr<MoE_GroupScore, "::mlir::moe::GroupScore::max">:$group_score,
    UnitAttr:$renormalize,
    DefaultValuedAttr<F64Attr, "1.0">:$scaling_factor,
    DefaultValuedAttr<MoE_NonNegativeI64, "0">:$capacity
  );
  let results = (outs MoE_FloatTensor2D:$weights, MoE_IndexTensor2D:$indices);
  let assemblyFormat = [{
    $scores (`bias` $selection_bias^ `:` type($selection_bias))?
    `k` `=` $k (`groups` `=` $groups^)? (`topk_groups` `=` $topk_groups^)?
    (`group_score` `=` $group_score^)? (`renormalize` $renormalize^)?
    (`scaling_factor` `=` $scaling_factor^)? (`capacity` `=` $capacity^)?
    attr-dict `:` type($scores) `->` type($weights) `,` type($indices)
  }];
  let hasVerifier = 1;
}

def MoE_DispatchOp : MoE_Op<"dispatch", [Pure]> {
  let summary = "block-aligned dispatch plan: token slots sorted by expert";
  let description = [{
    Builds the routing plan from `indices` (`[tokens, k]`, -1 = dropped).
    Slot `s = t * k + j` is token `t`'s `j`-th choice. The slots are sorted
    by expert with a stable counting sort (token order kept within an
    expert), and each expert's segment is padded to a multiple of
    `tile_rows`, so that every tile of `tile_rows` rows belongs to one expert.

    - `sorted_slots` (`[rows]`): the slot held by each row, -1 for padding;
    - `slot_rows` (`[tokens, k]`): the row of each slot, -1 if dropped;
    - `expert_offsets` (`[experts + 1]`): where each expert's segment starts;
      the last entry is `rows`;
    - `tile_experts` (`[rows / tile_rows]`): the expert of each tile.

    ```mlir
    %rows, %slot_rows, %offsets, %tiles = moe.dispatch %idx experts = 8 tile_rows = 4
        : tensor<?x2xi32> -> tensor<?xi32>, tensor<?x2xi32>, tensor<9xi32>, tensor<?xi32>
    ```
  }];
  let arguments = (ins MoE_IndexTensor2D:$indices, MoE_PositiveI64:$num_experts,
                       DefaultValuedAttr<MoE_PositiveI64, "16">:$tile_rows);
  let results = (outs MoE_IndexTensor1D:$sorted_slots,
                      MoE_IndexTensor2D:$slot_rows,
                      MoE_IndexTensor1D:$expert_offsets,
                      MoE_IndexTensor1D:$tile_experts);
  let assemblyFormat = [{
    $indices `experts` `=` $num_experts (`tile_rows` `=` $tile_rows^)? attr-dict
    `:` type($indices) `->` type($sorted_slots) `,` type($slot_rows) `,`
    type($expert_offsets) `,` type($tile_experts)
  }];
  let hasVerifier = 1;
}

def MoE_ExpertFFNOp : MoE_Op<"expert_ffn", [Pure]> {
  let summary = "grouped expert FFN over a dispatch plan";
  let description = [{
    For every row `r` of the plan holding slot `s = t * k + j`
    (`sorted_slots[r]`) of expert `e = tile_experts[r / tile_rows]`:
    `output[r] = weights[t, j] * down_e(act(gate_e x_t) * up_e x_t)` when
    `gate` is present (GLU), `weights[t, j] * down_e(act(up_e x_t))`
    otherwise. Padding rows are zero. `gate`/`up` are `[experts, width,
    hidden]`, `down` is `[experts, hidden, width]`.

    With `weight_panel = P > 0` the weights are packed into panels of `P`
    outputs, as `moe-pack-weights` leaves them: a matrix `[out, in]` becomes
    `[ceil(out / P), in, P]` with `packed[o / P][i][o % P] = W[o][i]` and
    zero padding, so gate/up are `[experts, ceil(width / P), hidden, P]` and
    down is `[experts, ceil(hidden / P), width, P]`. With `weight_k_pack = 2`
    as well (bf16 weights, even hidden and width), each lane holds two
    consecutive inputs: `[out, in]` becomes `[ceil(out / P), in / 2, 2 P]`
    with `packed[o / P][i / 2][2 (o % P) + i % 2] = W[o][i]`, the operand
    layout of AVX-512 BF16's pairwise dot products.

    `activation_type = bf16` rounds `x` and the hidden activations
    `act(gate x) * up x` to bf16 before they are multiplied (products are
    summed in f32): the arithmetic of bf16 dot-product instructions, and
    the GPU's.

    ```mlir
    %rows_out = moe.expert_ffn %x, %rows, %tiles, %w gate(%w1) up(%w3) down(%w2)
        activation = silu
        : (tensor<?x64xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x2xf32>,
           tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>)
        -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor2D:$input,
    MoE_IndexTensor1D:$sorted_slots,
    MoE_IndexTensor1D:$tile_experts,
    MoE_FloatTensor2D:$weights,
    Optional<MoE_WeightTensor>:$gate,
    MoE_WeightTensor:$up,
    MoE_WeightTensor:$down,
    MoE_Activation:$activation,
    DefaultValuedAttr<MoE_PositiveI64, "16">:$tile_rows,
    DefaultValuedAttr<MoE_NonNegativeI64, "0">:$weight_panel,
    DefaultValuedAttr<MoE_PositiveI64, "1">:$weight_k_pack,
    OptionalAttr<MoE_ActivationType>:$activation_type,
    OptionalAttr<MoE_CPUScheduleAttr>:$schedule
  );
  let results = (outs MoE_FloatTensor2D:$output);
  let assemblyFormat = [{
    $input `,` $sorted_slots `,` $tile_experts `,` $weights
    (`gate` `(` $gate^ `)`)? `up` `(` $up `)` `down` `(` $down `)`
    `activation` `=` $activation (`tile_rows` `=` $tile_rows^)?
    (`weight_panel` `=` $weight_panel^)? (`weight_k_pack` `=` $weight_k_pack^)?
    (`activation_type` `=` $activation_type^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The experts' intermediate width (from `down`, packed or not).
    int64_t getWidth();
    /// Whether the matmuls multiply bf16-rounded activations.
    bool hasBF16Activations() {
      return getActivationType() && getActivationType()->isBF16();
    }
  }];
}

def MoE_SharedExpertOp : MoE_Op<"shared_expert", [Pure, AttrSizedOperandSegments]> {
  let summary = "a dense expert applied to every token";
  let description = [{
    `output[t] = g_t * down(act(gate x_t) * up x_t)` (or `down(act(up x_t))`
    without `gate`), where `g_t = sigmoid(x_t · expert_gate[0])` when
    `expert_gate` (`[1, hidden]`) is present and 1 otherwise. `gate`/`up`
    are `[width, hidden]`, `down` is `[hidden, width]`; with
    `weight_panel = P > 0` (and `weight_k_pack`) they are packed into panels
    as for `moe.expert_ffn`; `activation_type` as there (the sigmoid gate's
    dot product stays f32).

    ```mlir
    %s = moe.shared_expert %x gate(%sg) up(%su) down(%sd) expert_gate(%g)
        activation = silu
        : (tensor<?x64xf32>, tensor<96x64xf32>, tensor<96x64xf32>,
           tensor<64x96xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins
    MoE_FloatTensor2D:$input,
    Optional<MoE_WeightTensor>:$gate,
    MoE_WeightTensor:$up,
    MoE_WeightTensor:$down,
    Optional<MoE_FloatTensor2D>:$expert_gate,
    MoE_Activation:$activation,
    DefaultValuedAttr<MoE_NonNegativeI64, "0">:$weight_panel,
    DefaultValuedAttr<MoE_PositiveI64, "1">:$weight_k_pack,
    OptionalAttr<MoE_ActivationType>:$activation_type,
    OptionalAttr<MoE_CPUScheduleAttr>:$schedule
  );
  let results = (outs MoE_FloatTensor2D:$output);
  let assemblyFormat = [{
    $input (`gate` `(` $gate^ `)`)? `up` `(` $up `)` `down` `(` $down `)`
    (`expert_gate` `(` $expert_gate^ `)`)? `activation` `=` $activation
    (`weight_panel` `=` $weight_panel^)? (`weight_k_pack` `=` $weight_k_pack^)?
    (`activation_type` `=` $activation_type^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The shared expert's intermediate width (from `down`).
    int64_t getWidth();
    /// Whether the matmuls multiply bf16-rounded activations.
    bool hasBF16Activations() {
      return getActivationType() && getActivationType()->isBF16();
    }
  }];
}

def MoE_CombineOp : MoE_Op<"combine", [Pure]> {
  let summary = "per-token sum of the expert rows, in a fixed order";
  let description = [{
    `output[t] = addend[t] + sum over j = 0 .. k-1 of rows[slot_rows[t, j]]`,
    summed in increasing `j` (deterministic, no atomics); slots with row -1
    (dropped) are skipped. `addend` (e.g. the shared experts) is optional.

    ```mlir
    %y = moe.combine %rows_out, %slot_rows
        : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins MoE_FloatTensor2D:$rows, MoE_IndexTensor2D:$slot_rows,
                       Optional<MoE_FloatTensor2D>:$addend);
  let results = (outs MoE_FloatTensor2D:$output);
  let assemblyFormat = [{
    $rows `,` $slot_rows (`add` $addend^ `:` type($addend))? attr-dict
    `:` type($rows) `,` type($slot_rows) `->` type($output)
  }];
  let hasVerifier = 1;
}

def MoE_StatsOp : MoE_Op<"stats", [Pure]> {
  let summary = "token slots routed to each expert";
  let description = [{
    Counts, for each expert, the entries of `indices` (`[tokens, k]`) equal
    to it; -1 (dropped) is not counted.

    ```mlir
    %load = moe.stats %idx : tensor<?x2xi32> -> tensor<8xi64>
    ```
  }];
  let arguments = (ins MoE_IndexTensor2D:$indices);
  let results = (outs MoE_CountTensor:$tokens_per_expert);
  let assemblyFormat = [{
    $indices attr-dict `:` type($indices) `->` type($tokens_per_expert)
  }];
  let hasVerifier = 1;
}

def MoE_AuxLossOp : MoE_Op<"aux_loss", [Pure]> {
  let summary = "load-balancing loss or router z-loss";
  let description = [{
    `load_balancing`: `E * sum_e f_e * P_e`, where `f_e` is the fraction of
    the `tokens * k` slots routed to expert `e` and `P_e` the mean over tokens
    of `softmax(logits)[:, e]` (Switch Transformers, Mixtral).
    `z_loss`: the mean over tokens of `logsumexp(logits[t])²` (ST-MoE).
    `indices` is required for `load_balancing` only.

    ```mlir
    %l = moe.aux_loss load_balancing %logits, %idx : tensor<?x2xi32>
        : tensor<?x8xf32> -> tensor<f32>
    ```
  }];
  let arguments = (ins MoE_AuxLossKind:$kind, MoE_FloatTensor2D:$logits,
                       Optional<MoE_IndexTensor2D>:$indices);
  let results = (outs 0DTensorOf<[F32]>:$loss);
  let assemblyFormat = [{
    $kind $logits (`,` $indices^ `:` type($indices))? attr-dict
    `:` type($logits) `->` type($loss)
  }];
  let hasVerifier = 1;
}

#endif // MOE_DIALECT_MOE_IR_MOEOPS_TD
