//===- MuseOps.td - Pipeline stages, kernels and the launch plan -*- tablegen -*-===//
#ifndef MUSE_OPS_TD
#define MUSE_OPS_TD

include "muse/Dialect/Muse/IR/MuseDialect.td"
include "muse/Dialect/Muse/IR/MuseAttrs.td"
include "mlir/IR/OpBase.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// The layer and its stages (tensor data flow, dynamic B, H, N, M)
//
// The spec comes before the operands: an inline `#muse.spec<...>` followed by
// `:` would read the colon as the attribute's type. The schedule rides in the
// attribute dictionary for the same reason.
//===----------------------------------------------------------------------===//

def Muse_AttentionOp : Muse_Op<"attention", [Pure]> {
  let summary = "one MuSe attention layer: o, lse = attention(q, k, v)";
  let description = [{
    q [B, H, N, D], k [B, Hkv, M, D], v [B, Hkv, M, Dv] of the spec's dtype;
    o [B, H, N, Dv] and lse [B, H, N] in f32.
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k, AnyRankedTensor:$v,
                       Muse_SpecAttr:$spec);
  let results = (outs AnyRankedTensor:$o, AnyRankedTensor:$lse);
  let assemblyFormat = [{
    $spec `(` $q `,` $k `,` $v `)` attr-dict `:` type($q) `,` type($k) `,` type($v) `->` type($o) `,` type($lse)
  }];
  let hasVerifier = 1;
}

def Muse_KMeansOp : Muse_Op<"kmeans", [Pure]> {
  let summary = "Lloyd k-means of one side (ALGORITHM.md section 2)";
  let description = [{
    x is q [B, H, N, D] (scaled by the spec's scale) or k [B, Hkv, M, D].
    centroids [heads, C, D] f32 (C = query_clusters or key_clusters),
    assign [heads, n] i32: the final partition.
  }];
  let arguments = (ins Muse_Side:$side, AnyRankedTensor:$x, Muse_SpecAttr:$spec);
  let results = (outs AnyRankedTensor:$centroids, AnyRankedTensor:$assign);
  let assemblyFormat = [{
    $side $spec `(` $x `)` attr-dict `:` type($x) `->` type($centroids) `,` type($assign)
  }];
  let hasVerifier = 1;
}

def Muse_ClusterSortOp : Muse_Op<"cluster_sort", [Pure]> {
  let summary = "the permutation that makes every cluster contiguous";
  let description = [{
    perm [heads, n] i32 (indices grouped by cluster, ascending inside one),
    offsets [heads, C + 1] i32 (start of every cluster in perm).
  }];
  let arguments = (ins Muse_Side:$side, AnyRankedTensor:$assign, Muse_SpecAttr:$spec);
  let results = (outs AnyRankedTensor:$perm, AnyRankedTensor:$offsets);
  let assemblyFormat = [{
    $side $spec `(` $assign `)` attr-dict `:` type($assign) `->` type($perm) `,` type($offsets)
  }];
  let hasVerifier = 1;
}

def Muse_SummarizeOp : Muse_Op<"summarize", [Pure]> {
  let summary = "stage 1: query-specific summaries of every key cluster";
  let description = [{
    summaries [B*H, CQ, CK, 1 + D + Dv] f32: ln-mass, tilted key mean, tilted
    value mean of every (query cluster, key cluster) pair.
  }];
  let arguments = (ins AnyRankedTensor:$q_centroids, AnyRankedTensor:$k, AnyRankedTensor:$v,
                       AnyRankedTensor:$k_perm, AnyRankedTensor:$k_offsets,
                       Muse_SpecAttr:$spec, OptionalAttr<Muse_ScheduleAttr>:$schedule);
  let results = (outs AnyRankedTensor:$summaries);
  let assemblyFormat = [{
    $spec `(` $q_centroids `,` $k `,` $v `,` $k_perm `,` $k_offsets `)`
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Muse_SelectNearOp : Muse_Op<"select_near", [Pure]> {
  let summary = "the near_clusters key clusters of largest mass per query cluster";
  let description = [{
    near [B*H, CQ, E] i32, ascending cluster index, -1 pads. Only for E > 0.
  }];
  let arguments = (ins AnyRankedTensor:$summaries, Muse_SpecAttr:$spec);
  let results = (outs AnyRankedTensor:$near);
  let assemblyFormat = [{
    $spec `(` $summaries `)` attr-dict `:` type($summaries) `->` type($near)
  }];
  let hasVerifier = 1;
}

def Muse_FarFieldOp : Muse_Op<"far_field", [Pure]> {
  let summary = "stage 2 (monopole terms) plus the exact near field";
  let description = [{
    o [B, H, N, Dv] f32 and lse [B, H, N] f32 of the order-0 expansion, with the
    key clusters of `near` (present iff near_clusters > 0) computed exactly.
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k, AnyRankedTensor:$v,
                       AnyRankedTensor:$q_centroids, AnyRankedTensor:$q_perm,
                       AnyRankedTensor:$q_offsets, AnyRankedTensor:$k_perm,
                       AnyRankedTensor:$k_offsets, AnyRankedTensor:$summaries,
                       Optional<AnyRankedTensor>:$near,
                       Muse_SpecAttr:$spec, OptionalAttr<Muse_ScheduleAttr>:$schedule);
  let results = (outs AnyRankedTensor:$o, AnyRankedTensor:$lse);
  let assemblyFormat = [{
    $spec `(` $q `,` $k `,` $v `,` $q_centroids `,` $q_perm `,` $q_offsets `,` $k_perm `,` $k_offsets `,`
    $summaries `)` (`near` `(` $near^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Muse_DipoleOp : Muse_Op<"dipole", [Pure]> {
  let summary = "order-1 correction: o += p_nj * Cov_ij(v,k) r_n over non-near clusters";
  let arguments = (ins AnyRankedTensor:$o_in, AnyRankedTensor:$lse,
                       AnyRankedTensor:$q, AnyRankedTensor:$k, AnyRankedTensor:$v,
                       AnyRankedTensor:$q_centroids, AnyRankedTensor:$q_perm,
                       AnyRankedTensor:$q_offsets, AnyRankedTensor:$k_perm,
                       AnyRankedTensor:$k_offsets, AnyRankedTensor:$summaries,
                       Optional<AnyRankedTensor>:$near,
                       Muse_SpecAttr:$spec, OptionalAttr<Muse_ScheduleAttr>:$schedule);
  let results = (outs AnyRankedTensor:$o);
  let assemblyFormat = [{
    $spec `(` $o_in `,` $lse `,` $q `,` $k `,` $v `,` $q_centroids `,` $q_perm `,` $q_offsets `,`
    $k_perm `,` $k_offsets `,` $summaries `)` (`near` `(` $near^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Causal MuSe (ALGORITHM.md section 4)
//
// muse-decompose lowers a causal layer into muse.window (the exact near
// field), then the stages of ONE far-field level - k-means and sort of keys
// and of queries, muse.assign_served, summarize, select_near, far_field,
// dipole - and muse.merge. The level's stages work on segments: each level
// is a batch of independent acausal problems (segment L's keys and member
// queries; the queries of its range R are served), and the outlined plan
// runs them once per level on segment views (LaunchView), as many levels as
// the runtime N needs: a new length never recompiles.
//===----------------------------------------------------------------------===//

def Muse_WindowOp : Muse_Op<"window", [Pure]> {
  let summary = "causal near field: exact attention over the last window_blocks blocks";
  let description = [{
    Query t of block b attends exactly to keys [max(0, (b - w + 1) S), t];
    o [B, H, N, Dv] f32 and lse [B, H, N] f32 are the first partial of the merge.
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k, AnyRankedTensor:$v,
                       Muse_SpecAttr:$spec, OptionalAttr<Muse_ScheduleAttr>:$schedule);
  let results = (outs AnyRankedTensor:$o, AnyRankedTensor:$lse);
  let assemblyFormat = [{
    $spec `(` $q `,` $k `,` $v `)` attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Muse_AssignServedOp : Muse_Op<"assign_served", [Pure]> {
  let summary = "queries of a segment's range R to their nearest non-empty L centroid";
  let description = [{
    Per segment: every served query (range R, clipped to N) joins the nearest
    query centroid of L with at least one member (ties to the lowest index);
    r = q - that centroid. perm [heads, n] / offsets [heads, CQ + 1] group the
    served queries by cluster, as muse.cluster_sort does for members.
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$q_centroids,
                       AnyRankedTensor:$q_assign, Muse_SpecAttr:$spec);
  let results = (outs AnyRankedTensor:$perm, AnyRankedTensor:$offsets);
  let assemblyFormat = [{
    $spec `(` $q `,` $q_centroids `,` $q_assign `)` attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Muse_MergeOp : Muse_Op<"merge", [Pure]> {
  let summary = "log-sum-exp merge of the window and every far-field level";
  let description = [{
    o = sum_p e^{lse_p - lse} o_p, lse = ln sum_p e^{lse_p}, window first, then
    levels ascending (a fixed order: outputs at t never depend on later inputs).
  }];
  let arguments = (ins AnyRankedTensor:$o_window, AnyRankedTensor:$lse_window,
                       AnyRankedTensor:$o_level, AnyRankedTensor:$lse_level,
                       Muse_SpecAttr:$spec);
  let results = (outs AnyRankedTensor:$o, AnyRankedTensor:$lse);
  let assemblyFormat = [{
    $spec `(` $o_window `,` $lse_window `,` $o_level `,` $lse_level `)` attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// After outlining: the launch plan
//===----------------------------------------------------------------------===//

def Muse_PlanOp : Muse_Op<"plan", [Symbol, SymbolTable, IsolatedFromAbove,
                                   NoTerminator, SingleBlock]> {
  let summary = "kernels, workspace buffers and the ordered launches of one layer";
  let description = [{
    Holds `muse.buffer` (workspace, laid out in order), `muse.kernel` (one
    extern "C" wrapper of the CUDA translation unit each) and `muse.launch`
    (the launch sequence, in order) ops.
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, Muse_SpecAttr:$spec,
                       Muse_ScheduleAttr:$schedule);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$sym_name $spec $schedule attr-dict-with-keyword $body";
  let skipDefaultBuilders = 1;
  let builders = [
    OpBuilder<(ins "::llvm::StringRef":$name, "SpecAttr":$spec, "ScheduleAttr":$schedule)>
  ];
  let hasVerifier = 1;
}

def Muse_BufferOp : Muse_Op<"buffer", [Symbol, HasParent<"PlanOp">]> {
  let summary = "a workspace buffer: elem * heads * (per_n*N + per_m*M + fixed)";
  let arguments = (ins SymbolNameAttr:$sym_name, TypeAttr:$elem_type, Muse_Side:$heads,
                       I64Attr:$per_n, I64Attr:$per_m, I64Attr:$fixed);
  let assemblyFormat = [{
    $sym_name `:` $elem_type `heads` $heads `per_n` $per_n `per_m` $per_m `fixed` $fixed attr-dict
  }];
  let hasVerifier = 1;
}

def Muse_KernelOp : Muse_Op<"kernel", [Symbol, HasParent<"PlanOp">]> {
  let summary = "one extern \"C\" kernel wrapper: the template instance it calls";
  let description = [{
    `threads` is the block size and the wrapper's `__launch_bounds__`; the
    optional `min_blocks` is its second argument (blocks that must fit on one
    SM at once), which caps the registers per thread where a kernel would
    otherwise run at too low an occupancy.
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, StrAttr:$instance, I64Attr:$threads,
                       I64Attr:$shared_bytes, StrAttr:$stage, OptionalAttr<I64Attr>:$min_blocks);
  let assemblyFormat = [{
    $sym_name `=` $instance `threads` $threads (`min_blocks` $min_blocks^)? `shared` $shared_bytes
    `stage` $stage attr-dict
  }];
  let hasVerifier = 1;
}

def Muse_LaunchOp : Muse_Op<"launch", [HasParent<"PlanOp">]> {
  let summary = "one launch of a kernel over a grid that scales with the runtime shape";
  let arguments = (ins FlatSymbolRefAttr:$kernel, Muse_DimAttr:$grid_x, Muse_DimAttr:$grid_y,
                       Muse_DimAttr:$grid_z, OptionalAttr<StrAttr>:$view);
  let assemblyFormat = [{
    $kernel `grid` custom<Grid>($grid_x, $grid_y, $grid_z) attr-dict
  }];
  let hasVerifier = 1;
}

include "muse/Dialect/Muse/IR/MuseBackwardOps.td"

#endif
