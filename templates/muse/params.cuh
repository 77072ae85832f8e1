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
//   o   [B, H,   N, Dv]   fp32, o_sb, o_sh, o_sn
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
};

#endif
