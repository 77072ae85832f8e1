//===- backward_rows.cuh - Backward stage 2, one warp per query -----------===//
//
// ALGORITHM.md section 5, per query n of cluster i (x_n = scale*q_n,
// r_n = x_n - qbar_i, lse_n and o_n of the forward, delta_n = dO_n . o_n):
//   far key cluster j:  P_nj = e^{lnmass_ij + r_n.kbar_ij - lse_n}
//                       u_nj = vbar_ij + [order 1] Sigma_ij r_n
//                       g_nj = P_nj (dO_n . u_nj - delta_n + dlse_n)
//                       dL/dr_n += g_nj kbar_ij + [order 1] P_nj Sigma_ij^T dO_n
//   near key l:         p_nl = e^{x_n.k_l - lse_n}
//                       dL/dx_n += p_nl (dO_n . v_l - delta_n + dlse_n) k_l
// Sigma_ij is never formed: Sigma_ij r = sum_l w_l (v_l - vbar)(k_l - kbar).r
// over the members of j (w_l = e^{qbar.k_l - lnmass_ij}), evaluated per key.
// Writes dq_n = dL/dx_n (unscaled and without the centroid term; the centroid
// kernel finishes it), bwd_dr_n = dL/dr_n, bwd_delta_n and (P_nj, g_nj) for
// the key kernel. Grid (ceil(N / kBwdWarps), B*H), block kBwdThreads.
// Causal levels run it on the served view: cluster from `served`, delta and
// lse of the whole sequence, dq += scale * dL/dx_n (templates/README.md).
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_ROWS_CUH
#define MUSE_TEMPLATES_BACKWARD_ROWS_CUH

#include "muse/backward_common.cuh"

namespace muse {

template <class Cfg> __device__ void backward_rows(const MuseParams &p) {
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  using T = typename Cfg::T;
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kBwdWarps + (threadIdx.x >> 5);
  const int bh = blockIdx.y;
  if (n >= p.N)
    return; // whole warps leave: no block-wide synchronisation below
  const HeadIndex hi(p, bh);
  // Causal levels (served view): the query's cluster is the segment cluster
  // that serves it, -1 past the end of the sequence.
  const bool causal = p.seg_count > 0;
  const int i = causal ? p.served[(long long)bh * p.N + n] : p.q_assign[(long long)bh * p.N + n];
  if (i < 0)
    return;
  const float *sum_i = p.summaries + ((long long)bh * CQ + i) * CK * F;
  const int *koff = p.k_offsets + (long long)hi.kh * (CK + 1);
  const int *kperm = p.k_perm + (long long)hi.kh * p.M;

  Lanes<D> x, c, r, dr, dx, kb, kl;
  Lanes<DV> dO, vb, vl;
  loadScaledQuery<Cfg>(p, hi, n, lane, x);
  c.loadF(p.q_centroids + ((long long)bh * CQ + i) * D, lane);
#pragma unroll
  for (int a = 0; a < Lanes<D>::K; ++a)
    r.x[a] = x.x[a] - c.x[a];
  dO.loadF(p.dout + doRow(p, hi.b, hi.h, n), lane);
  float delta;
  if (causal) {
    delta = p.bwd_delta[globalRow(p, bh, n)]; // dO . o of the merged o (window kernel)
  } else {
    Lanes<DV> o;
    o.loadF(p.o + oRow(p, hi.b, hi.h, n), lane);
    delta = dO.dotWith(o);
  }
  const float lse = rowLse(p, bh, n), dl = rowDLse(p, bh, n);
  dr.zero();
  dx.zero();
  float *pg = p.bwd_pg + ((long long)bh * p.N + n) * 2 * CK;

  for (int j = 0; j < CK; ++j) {
    const float lnm = sum_i[(long long)j * F];
    if (lnm == -kInf() || isNearPair<Cfg>(p, bh, i, j)) {
      if (lane == 0)
        pg[2 * j] = pg[2 * j + 1] = 0.f;
      continue;
    }
    kb.loadF(sum_i + (long long)j * F + 1, lane);
    vb.loadF(sum_i + (long long)j * F + 1 + D, lane);
    const float P = expf(lnm + r.dotWith(kb) - lse);
    float dOu = dO.dotWith(vb);
    if constexpr (Cfg::ORDER >= 1) {
      Lanes<D> sig; // sum_l w_l kc_l (dO . vc_l) = Sigma_ij^T dO
      sig.zero();
      for (int t = koff[j]; t < koff[j + 1]; ++t) {
        const int l = kperm[t];
        kl.template loadT<T>(p.k, kRow(p, hi.kh, l), lane);
        vl.template loadT<T>(p.v, vRow(p, hi.kh, l), lane);
        const float w = expf(c.dotWith(kl) - lnm);
#pragma unroll
        for (int a = 0; a < Lanes<D>::K; ++a)
          kl.x[a] -= kb.x[a];
#pragma unroll
        for (int a = 0; a < Lanes<DV>::K; ++a)
          vl.x[a] -= vb.x[a];
        const float A = r.dotWith(kl), Bv = dO.dotWith(vl);
        dOu = fmaf(w * A, Bv, dOu);
        sig.axpy(w * Bv, kl);
      }
      dr.axpy(P, sig);
    }
    const float g = P * (dOu - delta + dl);
    dr.axpy(g, kb);
    if (lane == 0) {
      pg[2 * j] = P;
      pg[2 * j + 1] = g;
    }
  }

  if constexpr (Cfg::NEAR > 0) {
    const int *nl = p.near + ((long long)bh * CQ + i) * Cfg::NEAR;
    for (int e = 0; e < Cfg::NEAR; ++e) {
      const int j = nl[e];
      if (j < 0)
        break;
      for (int t = koff[j]; t < koff[j + 1]; ++t) {
        const int l = kperm[t];
        kl.template loadT<T>(p.k, kRow(p, hi.kh, l), lane);
        vl.template loadT<T>(p.v, vRow(p, hi.kh, l), lane);
        const float pn = expf(x.dotWith(kl) - lse);
        dx.axpy(pn * (dO.dotWith(vl) - delta + dl), kl);
      }
    }
  }

#pragma unroll
  for (int a = 0; a < Lanes<D>::K; ++a)
    dx.x[a] += dr.x[a];
  float *dqn = p.dq + dqRow(p, hi.b, hi.h, n);
  if (causal) {
    // dq already holds the window's and the lower levels' parts: this launch
    // is the one writer of the rows it serves at this level.
    Lanes<D> old;
    old.loadF(dqn, lane);
    old.axpy(p.scale, dx);
    old.store(dqn, lane);
  } else {
    dx.store(dqn, lane);
  }
  dr.store(p.bwd_dr + ((long long)bh * p.N + n) * D, lane);
  if (lane == 0 && !causal)
    p.bwd_delta[(long long)bh * p.N + n] = delta;
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_ROWS_CUH
