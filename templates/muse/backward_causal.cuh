//===- backward_causal.cuh - The kernels only the causal backward needs ---===//
//
// ALGORITHM.md sections 4-5 with the forward's partitions held fixed. Every
// partial of the merge (the window, then each level's far field) is
// differentiated against the MERGED o and lse, as in split-KV attention:
// with o = sum_p e^{lse_p - lse} o_p, dL/do_p = e^{lse_p - lse} dO and the
// merge's dL/dlse_p fold into P = e^{s - lse} and delta = dO . o of the final
// output, so each part is the acausal backward of its keys with (o, lse) of
// the whole call. Launch order on one stream (templates/README.md, "Backward
// (causal)"): window_dq (stores dq, delta), window_dkdv (stores dk, dv), then
// per level: restore, cluster_sort, centroids, summarize, select_near,
// served_sort, backward_rows/keys/centroid and members, which ADD into
// dq/dk/dv. Each launch writes each row it touches from one warp or block, so
// the gradients are deterministic without atomics.
//
//   backward_window_dq    Full, grid (ceil(N/rows), B*H) (backward_window.cuh:
//   backward_window_dkdv  Full, grid (ceil(M/rows), B*Hkv)  rows and threads by dtype)
//   backward_restore      segment / served view, grid (ceil(2^l S/256), view heads), 256
//   backward_centroids    segment view, grid (CQ, view heads), D
//   backward_members      segment view, grid (ceil(2^l S/4), view heads), 128
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_CAUSAL_CUH
#define MUSE_TEMPLATES_BACKWARD_CAUSAL_CUH

#include "muse/backward_common.cuh"
#include "muse/backward_window.cuh"

namespace muse {

/// The forward's partitions of level seg_level, saved in the reference layout
/// (out_query / out_key / out_served: [levels, heads, seq], causal_export),
/// back into the segment view's q_assign and k_assign (segment view) or its
/// served clusters (served view, -1 past the sequence).
template <class Cfg> __device__ void backward_restore(const MuseParams &p) {
  const int bh = blockIdx.y, n = blockIdx.x * 256 + threadIdx.x;
  if (n >= p.N)
    return;
  const int vb = bh / p.H, h = bh - vb * p.H;
  const int b = vb / p.seg_count, a = vb - b * p.seg_count;
  const long long BH = (long long)p.batch * p.H, BHkv = (long long)p.batch * p.Hkv;
  const long long t = (long long)a * p.seg_stride + p.seg_qbase + n;
  const long long gq = ((long long)p.seg_level * BH + (long long)b * p.H + h) * p.seq_len;
  if (p.seg_qbase != 0) { // served view: R's rows
    p.served[(long long)bh * p.N + n] = t < p.seq_len ? p.out_served[gq + t] : -1;
    return;
  }
  p.q_assign[(long long)bh * p.N + n] = p.out_query[gq + t];
  const int ratio = p.H / p.Hkv;
  if (h % ratio == 0) {
    const int hk = h / ratio;
    const long long gk = ((long long)p.seg_level * BHkv + (long long)b * p.Hkv + hk) * p.seq_len;
    p.k_assign[((long long)vb * p.Hkv + hk) * p.N + n] = p.out_key[gk + t];
  }
}

/// Query centroids of the restored partition: the mean of each cluster's
/// scaled members, summed in permutation order (deterministic; the forward's
/// last k-means update formed the same means from atomic sums, so the two
/// agree to rounding and the partition - what the loss saw - is identical).
template <class Cfg> __device__ void backward_centroids(const MuseParams &p) {
  constexpr int D = Cfg::D, CQ = Cfg::CQ;
  using T = typename Cfg::T;
  const int d = threadIdx.x, i = blockIdx.x, bh = blockIdx.y;
  if (d >= D)
    return;
  const HeadIndex hi(p, bh);
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  const int start = qoff[i], count = qoff[i + 1] - start;
  const int *perm = p.q_perm + (long long)bh * p.N + start;
  float s = 0.f;
  for (int m = 0; m < count; ++m)
    s += scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, perm[m]) + d));
  p.q_centroids[((long long)bh * CQ + i) * D + d] = count > 0 ? s / float(count) : 0.f;
}

/// Every member n of cluster i of the segment receives the centroid share
/// G_i / |i| that backward_centroid left in bwd_dqbar[i, 0]: dq_n += scale * share.
template <class Cfg> __device__ void backward_members(const MuseParams &p) {
  constexpr int D = Cfg::D, CQ = Cfg::CQ, CK = Cfg::CK;
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kBwdWarps + (threadIdx.x >> 5), bh = blockIdx.y;
  if (n >= p.N)
    return;
  const HeadIndex hi(p, bh);
  const int i = p.q_assign[(long long)bh * p.N + n];
  Lanes<D> share, dq;
  share.loadF(p.bwd_dqbar + ((long long)bh * CQ + i) * CK * D, lane);
  float *row = p.dq + dqRow(p, hi.b, hi.h, n);
  dq.loadF(row, lane);
  dq.axpy(p.scale, share);
  dq.store(row, lane);
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_CAUSAL_CUH
