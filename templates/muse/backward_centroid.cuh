//===- backward_centroid.cuh - The centroid gradient, spread to members ---===//
//
// ALGORITHM.md section 5: qbar_i is the mean of its members, so with
//   G_i = sum_j bwd_dqbar[i, j]  (stage 1, key clusters ascending)
//       - sum_{n in i} bwd_dr_n  (stage 2 through r_n = x_n - qbar_i)
// every member receives G_i / |i|, and dq_n = scale * (dL/dx_n + G_i / |i|)
// (dq holds dL/dx_n from backward_rows). Grid (CQ, B*H), block D: one thread
// per component, members in permutation order.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_CENTROID_CUH
#define MUSE_TEMPLATES_BACKWARD_CENTROID_CUH

#include "muse/backward_common.cuh"

namespace muse {

/// G_i = sum_j stage1[j] - sum_{t < count} bwd_dr[members[t]] for this
/// thread's component, in that order, KB loads in flight at a time (the
/// serial sum would otherwise wait one round trip a term).
template <class Cfg, int KB = 8>
__device__ __forceinline__ float centroidGradient(const MuseParams &p, int bh, const float *stage1, const int *members,
                                                  int count, int d) {
  constexpr int D = Cfg::D, CK = Cfg::CK;
  float G = 0.f;
#pragma unroll 1
  for (int j0 = 0; j0 < CK; j0 += KB) {
    float x[KB];
#pragma unroll
    for (int b = 0; b < KB; ++b)
      x[b] = j0 + b < CK ? stage1[(long long)(j0 + b) * D] : 0.f;
#pragma unroll
    for (int b = 0; b < KB; ++b)
      if (j0 + b < CK)
        G += x[b];
  }
#pragma unroll 1
  for (int t0 = 0; t0 < count; t0 += KB) {
    float x[KB];
#pragma unroll
    for (int b = 0; b < KB; ++b)
      x[b] = t0 + b < count ? p.bwd_dr[((long long)bh * p.N + members[t0 + b]) * D + d] : 0.f;
#pragma unroll
    for (int b = 0; b < KB; ++b)
      if (t0 + b < count)
        G -= x[b];
  }
  return G;
}

template <class Cfg> __device__ void backward_centroid(const MuseParams &p) {
  constexpr int D = Cfg::D, CQ = Cfg::CQ, CK = Cfg::CK, KB = 8;
  const int d = threadIdx.x, i = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
  if (d >= D)
    return;
  float *stage1 = p.bwd_dqbar + ((long long)bh * CQ + i) * CK * D + d;
  const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
  // Causal levels (served view): q_offsets / q_perm group the SERVED queries,
  // whose dL/dr_n enter G_i, while the centroid is the mean of the segment's
  // MEMBERS (q_counts). The share G_i / |members| is left in bwd_dqbar[i, 0]
  // (each thread overwrites only the column it has finished reading) for
  // backward_members, which adds it to the members' dq.
  if (p.seg_count > 0) {
    const int members = p.q_counts[(long long)bh * CQ + i];
    float G = 0.f;
    if (qcount > 0 && members > 0)
      G = centroidGradient<Cfg, KB>(p, bh, stage1, qperm, qcount, d) / float(members);
    stage1[0] = G;
    return;
  }
  if (qcount == 0)
    return;
  const float share = centroidGradient<Cfg, KB>(p, bh, stage1, qperm, qcount, d) / float(qcount);
  // dq_n = scale (dq_n + share): KB members' old values loaded before their
  // stores. This is every member's last writer: where the caller asked for
  // dq in T (out_dq; dq is then acc_dq, the rows' fp32 dL/dr) it rounds here.
  using T = typename Cfg::T;
#pragma unroll 1
  for (int t0 = 0; t0 < qcount; t0 += KB) {
    float old[KB];
#pragma unroll
    for (int b = 0; b < KB; ++b)
      old[b] = t0 + b < qcount ? p.dq[dqRow(p, hi.b, hi.h, qperm[t0 + b]) + d] : 0.f;
#pragma unroll
    for (int b = 0; b < KB; ++b) {
      if (t0 + b >= qcount)
        continue;
      const int n = qperm[t0 + b];
      const float x = p.scale * (old[b] + share);
      if constexpr (TensorCoreType<T>::value) {
        if (p.out_dq) {
          static_cast<T *>(p.out_dq)[outDqRow(p, hi.b, hi.h, n) + d] = fromFloat<T>(x);
          continue;
        }
      }
      p.dq[dqRow(p, hi.b, hi.h, n) + d] = x;
    }
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_CENTROID_CUH
