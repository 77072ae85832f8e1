//===- MuseBackwardOps.td - The acausal backward and its stages -*- tablegen -*-===//
//
// muse-derive-backward adds, next to every function with an acausal
// muse.attention, a function `<name>_backward` holding muse.attention_backward;
// muse-decompose-backward splits that into the three stages below and
// muse-outline-backward turns them into a second muse.plan (`muse.pass =
// "backward"`) compiled into the same module. The stages read the forward's
// workspace (partitions, centroids, summaries, near lists, row lse) of the
// same call; those products are the forward plan's buffers, not SSA values.
//===----------------------------------------------------------------------===//
#ifndef MUSE_BACKWARD_OPS_TD
#define MUSE_BACKWARD_OPS_TD

def Muse_AttentionBackwardOp : Muse_Op<"attention_backward", [Pure]> {
  let summary = "gradients of one acausal MuSe layer: dq, dk, dv = backward(q, k, v, o, lse, dO)";
  let description = [{
    ALGORITHM.md section 5 with the forward's partitions held fixed. q, k, v
    as for muse.attention; o [B, H, N, Dv] and dout [B, H, N, Dv] in the
    spec's dtype (like q, k, v), lse [B, H, N] in f32; dq [B, H, N, D],
    dk [B, Hkv, M, D], dv [B, Hkv, M, Dv] in f32.
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k, AnyRankedTensor:$v,
                       AnyRankedTensor:$o, AnyRankedTensor:$lse, AnyRankedTensor:$dout,
                       Muse_SpecAttr:$spec);
  let results = (outs AnyRankedTensor:$dq, AnyRankedTensor:$dk, AnyRankedTensor:$dv);
  let assemblyFormat = [{
    $spec `(` $q `,` $k `,` $v `,` $o `,` $lse `,` $dout `)` attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Muse_BackwardRowsOp : Muse_Op<"backward_rows", [Pure]> {
  let summary = "backward stage 2, per query: dL/dx_n, dL/dr_n, delta_n and (P_nj, g_nj)";
  let description = [{
    dx [B, H, N, D] (without the centroid term), pg [B*H, N, 2*CK],
    dr [B*H, N, D], delta [B*H, N]; all f32.
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k, AnyRankedTensor:$v,
                       AnyRankedTensor:$o, AnyRankedTensor:$lse, AnyRankedTensor:$dout,
                       Muse_SpecAttr:$spec);
  let results = (outs AnyRankedTensor:$dx, AnyRankedTensor:$pg, AnyRankedTensor:$dr,
                      AnyRankedTensor:$delta);
  let assemblyFormat = [{
    $spec `(` $q `,` $k `,` $v `,` $o `,` $lse `,` $dout `)` attr-dict `:` functional-type(operands, results)
  }];
}

def Muse_BackwardKeysOp : Muse_Op<"backward_keys", [Pure]> {
  let summary = "backward stage 1 and the near field, per key: dk, dv and dL/dqbar per pair";
  let description = [{
    dk [B, Hkv, M, D], dv [B, Hkv, M, Dv], dqbar [B*H, CQ, CK, D]; all f32.
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k, AnyRankedTensor:$v,
                       AnyRankedTensor:$lse, AnyRankedTensor:$dout, AnyRankedTensor:$pg,
                       AnyRankedTensor:$delta, Muse_SpecAttr:$spec);
  let results = (outs AnyRankedTensor:$dk, AnyRankedTensor:$dv, AnyRankedTensor:$dqbar);
  let assemblyFormat = [{
    $spec `(` $q `,` $k `,` $v `,` $lse `,` $dout `,` $pg `,` $delta `)` attr-dict `:` functional-type(operands, results)
  }];
}

def Muse_BackwardCentroidOp : Muse_Op<"backward_centroid", [Pure]> {
  let summary = "dq = scale * (dL/dx_n + G_i / |i|): the centroid gradient spread to its members";
  let arguments = (ins AnyRankedTensor:$dx, AnyRankedTensor:$dr, AnyRankedTensor:$dqbar,
                       Muse_SpecAttr:$spec);
  let results = (outs AnyRankedTensor:$dq);
  let assemblyFormat = [{
    $spec `(` $dx `,` $dr `,` $dqbar `)` attr-dict `:` functional-type(operands, results)
  }];
}

#endif
