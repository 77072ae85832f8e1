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

template <class Cfg> __device__ void backward_centroid(const MuseParams &p) {
  constexpr int D = Cfg::D, CQ = Cfg::CQ, CK = Cfg::CK;
  const int d = threadIdx.x, i = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
  if (d >= D)
    return;
  float *stage1 = p.bwd_dqbar + ((long long)bh * CQ + i) * CK * D + d;
  // Causal levels (served view): q_offsets / q_perm group the SERVED queries,
  // whose dL/dr_n enter G_i, while the centroid is the mean of the segment's
  // MEMBERS (q_counts). The share G_i / |members| is left in bwd_dqbar[i, 0]
  // (each thread overwrites only the column it has finished reading) for
  // backward_members, which adds it to the members' dq.
  if (p.seg_count > 0) {
    const int members = p.q_counts[(long long)bh * CQ + i];
    float G = 0.f;
    if (qcount > 0 && members > 0) {
      for (int j = 0; j < CK; ++j)
        G += stage1[(long long)j * D];
      const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
      for (int t = 0; t < qcount; ++t)
        G -= p.bwd_dr[((long long)bh * p.N + qperm[t]) * D + d];
      G /= float(members);
    }
    stage1[0] = G;
    return;
  }
  if (qcount == 0)
    return;
  const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
  float G = 0.f;
  for (int j = 0; j < CK; ++j)
    G += stage1[(long long)j * D];
  for (int t = 0; t < qcount; ++t)
    G -= p.bwd_dr[((long long)bh * p.N + qperm[t]) * D + d];
  const float share = G / float(qcount);
  for (int t = 0; t < qcount; ++t) {
    float *dq = p.dq + dqRow(p, hi.b, hi.h, qperm[t]) + d;
    *dq = p.scale * (*dq + share);
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_CENTROID_CUH
