//===- params.cuh - The one argument block every MuSe kernel takes ---------===//
//
// Shared by the kernels (compiled by NVRTC) and the host runtime (compiled by
// the C++ compiler): plain fixed-width fields only, no host headers. Every
// kernel of an attention takes `MuseParams` by value; the runtime fills it once
// per call and the launch plan says which kernels run in which order.
//
// Layout conventions (elements, not bytes; the last dimension is contiguous):
//   q   [B, H,   N, D ]   q_sb, q_sh, q_sn
//   k   [B, Hkv, M, D ]   k_sb, k_sh, k_sm
//   v   [B, Hkv, M, Dv]   v_sb, v_sh, v_sm
//   o   [B, H,   N, Dv]   fp32, o_sb, o_sh, o_sn (the backward reads the
//                         forward's o in T through o_in, same strides)
//   lse [B, H,   N]       fp32, contiguous (may be null: not written)
// Query head h uses kv head h / (H / Hkv).
//
// Workspace buffers (owned by the caller, laid out by the launch plan; the
// names below are the plan's buffer names). "qh" = B*H query heads, "kh" =
// B*Hkv kv heads; the head index is b*H + h (resp. b*Hkv + hk).
//   q_centroids  f32 [qh, CQ, D]    scaled query centroids (scale folded in)
//   k_centroids  f32 [kh, CK, D]
//   q_sums       f32 [qh, CQ, D]    k-means accumulators (zero between uses)
//   k_sums       f32 [kh, CK, D]
//   q_counts     i32 [qh, CQ]       members per cluster (final partition)
//   k_counts     i32 [kh, CK]
//   q_assign     i32 [qh, N]        cluster of each query
//   k_assign     i32 [kh, M]        cluster of each key
//   q_offsets    i32 [qh, CQ + 1]   start of each cluster in q_perm
//   k_offsets    i32 [kh, CK + 1]
//   q_perm       i32 [qh, N]        query indices grouped by cluster (ascending inside)
//   k_perm       i32 [kh, M]
//   summaries    f32 [qh, CQ, CK, 1 + D + DV]  per pair: ln-mass (m_ij + ln Z_ij,
//                                   -inf when cluster j is empty), tilted key
//                                   mean k̄_ij, tilted value mean v̄_ij
//   near         i32 [qh, CQ, max(E,1)]  the E key clusters of largest mass per
//                                   query cluster (ascending cluster index, -1 pads)
//   row_lse      f32 [qh, N]        lse of every query (kept even when lse is null)
//   dipole_kv    T [kh, M, D + DV]  (i32 pairs) order >= 1, 16-bit inputs: the rows of
//                                   each key cluster in k_perm order, centred on
//                                   the cluster's mean key and value (dipole_prep)
//   dipole_means f32 [kh, CK, D + DV]  those means, mu_j then nu_j
//   part_o, run_lse, served          causal only (see the fields below)
//   bwd_pg, bwd_dr, bwd_delta, bwd_dqbar, bwd_pairs  backward only (see the fields below)
//   acc_o, acc_dq, acc_dk, acc_dv    16-bit specs: fp32 accumulators of outputs
//                                   delivered in T (see out_o below)
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_PARAMS_CUH
#define MUSE_TEMPLATES_PARAMS_CUH

struct MuseParams {
  const void *q;
  const void *k;
  const void *v;
  float *o;
  float *lse;

  long long q_sb, q_sh, q_sn;
  long long k_sb, k_sh, k_sm;
  long long v_sb, v_sh, v_sm;
  long long o_sb, o_sh, o_sn;

  int B, H, Hkv, N, M;
  float scale; // softmax scale, folded into the queries once

  float *q_centroids;
  float *k_centroids;
  float *q_sums;
  float *k_sums;
  int *q_counts;
  int *k_counts;
  int *q_assign;
  int *k_assign;
  int *q_offsets;
  int *k_offsets;
  int *q_perm;
  int *k_perm;
  float *summaries;
  int *near;
  float *row_lse;
  int *dipole_kv;      // T pairs, see above
  float *dipole_means;

  // Causal far field (ALGORITHM.md §4; templates/README.md "Causal forward").
  // A per-level launch sees one level ℓ; a segment view sees every segment of
  // that level as its own batch entry: virtual batch b' = b*seg_count + a,
  // B = batch*seg_count, N = M = 2^ℓ S (the segment length), and row n of
  // segment a is position a*seg_stride + seg_qbase + n (keys: + 0). Acausal
  // launches and the window see seg_count = 0 and the real shape.
  int seg_count;        // segments per batch entry of this view; 0: no view
  int seg_level;        // ℓ of a per-level launch
  int level_segs;       // segments of level ℓ (per-level launches)
  int seq_len;          // N of the whole call
  int batch;            // B of the whole call
  long long seg_stride; // 2^{ℓ+1} S: positions from one segment to the next
  long long seg_qbase;  // query/output row offset inside a segment (0: L, (2^ℓ+w-1)S: R)
  float *part_o;        // f32 [B*H, N, Dv]: the partial o of one level (contiguous)
  float *run_lse;       // f32 [B*H, N]: lse of the partials merged so far
  int *served;          // i32 [view heads, 2^ℓ S]: nearest non-empty L centroid, -1 past N
  int *out_key;         // i32 [levels, B*Hkv, N] partition export, null: not requested
  int *out_query;       // i32 [levels, B*H, N]
  int *out_served;      // i32 [levels, B*H, N]
  // The call's o (f32, its strides) and lse (null: not requested), also in
  // views whose o is part_o: a served launch that merges its partial itself
  // (far_field<Cfg, true>) writes there.
  float *merge_o;
  long long merge_o_sb, merge_o_sh, merge_o_sn;
  float *merge_lse;

  // Backward (templates/README.md "Backward"); null/0 in forward launches.
  // o and dO are in the input dtype T (like q, k, v); gradients are fp32
  // with their own strides; dq is w.r.t. the unscaled q. The backward reads
  // the forward's workspace buffers unchanged.
  const void *o_in;  // the forward's o  T [B, H, N, Dv]  o_sb, o_sh, o_sn
  const void *dout;  // dL/do  T [B, H, N, Dv]  do_sb, do_sh, do_sn
  const float *dlse; // dL/dlse f32 [B, H, N] contiguous; null: zero
  float *dq;         // f32 [B, H, N, D]    dq_sb, dq_sh, dq_sn
  float *dk;         // f32 [B, Hkv, M, D]  dk_sb, dk_sh, dk_sm
  float *dv;         // f32 [B, Hkv, M, Dv] dv_sb, dv_sh, dv_sm
  long long do_sb, do_sh, do_sn;
  long long dq_sb, dq_sh, dq_sn;
  long long dk_sb, dk_sh, dk_sm;
  long long dv_sb, dv_sh, dv_sm;
  float *bwd_pg;    // f32 [qh, N, 2*CK]  per (query, far key cluster): P_nj, g_nj
  float *bwd_dr;    // f32 [qh, N, D]     dL/dr_n of the far field
  float *bwd_delta; // f32 [qh, N]        dO_n . o_n
  float *bwd_dqbar; // f32 [qh, CQ, CK, D] stage-1 part of dL/dqbar_i per key cluster
  float *bwd_pairs; // f32 [qh, CQ, CK, 1 + D + DV] per pair: sums over i of g, g r, P dO
                    // (order 0: the first slot holds off_ij = gL - gK.kbar_ij - gV.vbar_ij)

  // Outputs in the input dtype T (templates/README.md "Outputs"). Null: the
  // fp32 fields o, dq, dk, dv above are the caller's outputs. Otherwise these
  // are the caller's T tensors (their own strides), and o, dq, dk, dv point
  // at the fp32 accumulators acc_* of the workspace (contiguous [heads, rows,
  // width]) or are null where no kernel accumulates that output; each row is
  // rounded to T once, by the kernel that writes it last when that kernel
  // knows it (acausal: far_field's o at order 0, backward_keys' dk, dv at
  // order 0 without near field, backward_centroid's dq), else by the plan's
  // emit kernel (emit.cuh) after everything else.
  void *out_o;
  long long out_o_sb, out_o_sh, out_o_sn;
  void *out_dq;
  void *out_dk;
  void *out_dv;
  long long out_dq_sb, out_dq_sh, out_dq_sn;
  long long out_dk_sb, out_dk_sh, out_dk_sm;
  long long out_dv_sb, out_dv_sh, out_dv_sm;
  float *acc_o;  // f32 [qh, N, Dv]  (causal or order >= 1)
  float *acc_dq; // f32 [qh, N, D]
  float *acc_dk; // f32 [kh, M, D]   (unless backward_keys writes dk, dv itself)
  float *acc_dv; // f32 [kh, M, Dv]
  int causal;    // the spec's causal flag (seg_count is 0 in its full-view launches too)
};

#endif
