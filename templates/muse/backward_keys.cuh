//===- backward_keys.cuh - Backward stage 1 and the near field for keys ---===//
//
// Block (j, kh) owns the keys of key cluster j of kv head kh: it writes their
// dk and dv rows alone (no atomics), visiting the query heads of its GQA group
// and their query clusters i in ascending order. Per pair (i, j):
//   near pair: every member n of i, exactly:
//     p_nl = e^{x_n.k_l - lse_n},  g = p_nl (dO_n.v_l - delta_n + dlse_n)
//     dk_l += g x_n,  dv_l += p_nl dO_n
//   far pair (ALGORITHM.md section 5, stage 1; w_l = e^{qbar.k_l - lnmass},
//   kc = k_l - kbar, vc = v_l - vbar; sums over the members n of i, whose
//   P_nj and g_nj backward_rows stored):
//     gL = sum g_nj,  gK = sum g_nj r_n,  gV = sum P_nj dO_n
//     G  = sum P_nj dO_n r_n^T   (order 1; never formed: G kc and G^T vc are
//                                 sums over n)
//     a_l  = gL + gK.kc + gV.vc + [order 1] (vc.G kc - <G, Sigma_ij>)
//     dk_l += w_l gK + w_l a_l qbar + [order 1] w_l G^T vc
//     dv_l += w_l gV + [order 1] w_l G kc
//     dL/dqbar_i (stage-1 part for j) = sum_l w_l a_l k_l -> bwd_dqbar[i, j]
//   with <G, Sigma_ij> = sum_l w_l vc.G kc, a first pass over the keys.
// Every sum runs in a fixed order: the results do not depend on scheduling.
// Grid (CK, B*Hkv), block kBwdThreads: one warp per key (keys t, t + warps,
// ...); the pair sums gL, gK, gV one thread per component.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_KEYS_CUH
#define MUSE_TEMPLATES_BACKWARD_KEYS_CUH

#include "muse/backward_common.cuh"

namespace muse {

template <class Cfg> __device__ void backward_keys(const MuseParams &p) {
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  constexpr bool kDipole = Cfg::ORDER >= 1;
  using T = typename Cfg::T;
  __shared__ float cen[D], gK[D], gV[DV], part[kBwdWarps][D], wsum[kBwdWarps];
  __shared__ float gL, gSigma;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int j = blockIdx.x, kh = blockIdx.y;
  const int b = kh / p.Hkv, hk = kh - b * p.Hkv, group = p.H / p.Hkv;
  const int *koff = p.k_offsets + (long long)kh * (CK + 1);
  const int kstart = koff[j], kcount = koff[j + 1] - kstart;
  const int *kperm = p.k_perm + (long long)kh * p.M + kstart;
  auto dkRow = [&](int l) { return p.dk + dkRowOff(p, kh, l); };
  auto dvRow = [&](int l) { return p.dv + dvRowOff(p, kh, l); };

  // Causal levels accumulate onto the window's and the lower levels' dk, dv
  // (this block is the one writer of its keys at this level); acausal starts
  // from zero.
  for (int t = warp; t < kcount && p.seg_count == 0; t += kBwdWarps) {
    Lanes<D> zk;
    Lanes<DV> zv;
    zk.zero();
    zv.zero();
    zk.store(dkRow(kperm[t]), lane);
    zv.store(dvRow(kperm[t]), lane);
  }

  Lanes<D> kl, kc, xn, rn, dk, acc;
  Lanes<DV> vl, vc, dOn, dv;
  for (int g = 0; g < group; ++g) {
    const int h = hk * group + g, bh = b * p.H + h;
    const HeadIndex hi(p, bh);
    const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
    for (int i = 0; i < CQ; ++i) {
      float *out = p.bwd_dqbar + (((long long)bh * CQ + i) * CK + j) * D;
      const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
      const bool near = isNearPair<Cfg>(p, bh, i, j);
      if (qcount == 0 || kcount == 0 || near) {
        for (int d = tid; d < D; d += kBwdThreads)
          out[d] = 0.f; // no stage-1 term: near pairs are exact, empty ones absent
        if (qcount == 0 || kcount == 0)
          continue;
      }
      const int *qperm = p.q_perm + (long long)bh * p.N + qstart;

      if (near) {
        for (int t = warp; t < kcount; t += kBwdWarps) {
          const int l = kperm[t];
          kl.template loadT<T>(p.k, kRow(p, kh, l), lane);
          vl.template loadT<T>(p.v, vRow(p, kh, l), lane);
          dk.zero();
          dv.zero();
          for (int s = 0; s < qcount; ++s) {
            const int n = qperm[s];
            loadScaledQuery<Cfg>(p, hi, n, lane, xn);
            dOn.loadF(p.dout + doRow(p, hi.b, hi.h, n), lane);
            const float pn = expf(xn.dotWith(kl) - rowLse(p, bh, n));
            const float gn =
                pn * (dOn.dotWith(vl) - p.bwd_delta[globalRow(p, bh, n)] + rowDLse(p, bh, n));
            dk.axpy(gn, xn);
            dv.axpy(pn, dOn);
          }
          Lanes<D> ok;
          Lanes<DV> ov;
          ok.loadF(dkRow(l), lane);
          ov.loadF(dvRow(l), lane);
#pragma unroll
          for (int a = 0; a < Lanes<D>::K; ++a)
            ok.x[a] += dk.x[a];
#pragma unroll
          for (int a = 0; a < Lanes<DV>::K; ++a)
            ov.x[a] += dv.x[a];
          ok.store(dkRow(l), lane);
          ov.store(dvRow(l), lane);
        }
        continue;
      }

      // Pair sums over the members of i: one thread per component, members in
      // permutation order.
      const float *sum_ij = p.summaries + (((long long)bh * CQ + i) * CK + j) * F;
      const float *cent = p.q_centroids + ((long long)bh * CQ + i) * D;
      const float lnm = sum_ij[0];
      __syncthreads(); // the previous pair's shared values are no longer read
      for (int e = tid; e < 1 + D + DV; e += kBwdThreads) {
        float s = 0.f;
        if (e == 0) {
          for (int t = 0; t < qcount; ++t)
            s += p.bwd_pg[((long long)bh * p.N + qperm[t]) * 2 * CK + 2 * j + 1];
          gL = s;
        } else if (e <= D) {
          const int d = e - 1;
          const float cd = cent[d];
          for (int t = 0; t < qcount; ++t) {
            const int n = qperm[t];
            const float x = scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, n) + d));
            s = fmaf(p.bwd_pg[((long long)bh * p.N + n) * 2 * CK + 2 * j + 1], x - cd, s);
          }
          gK[d] = s;
          cen[d] = cd;
        } else {
          const int d = e - 1 - D;
          for (int t = 0; t < qcount; ++t) {
            const int n = qperm[t];
            s = fmaf(p.bwd_pg[((long long)bh * p.N + n) * 2 * CK + 2 * j],
                     p.dout[doRow(p, hi.b, hi.h, n) + d], s);
          }
          gV[d] = s;
        }
      }
      __syncthreads();
      Lanes<D> c, kb, gk;
      Lanes<DV> vb, gv;
      c.loadF(cen, lane);
      kb.loadF(sum_ij + 1, lane);
      vb.loadF(sum_ij + 1 + D, lane);
      gk.loadF(gK, lane);
      gv.loadF(gV, lane);

      // The dipole's per-key sums over the members of i:
      //   gkc = G kc (Dv), gtv = G^T vc (D), vgk = vc . G kc.
      auto dipoleSums = [&](Lanes<DV> &gkc, Lanes<D> &gtv) {
        gkc.zero();
        gtv.zero();
        float vgk = 0.f;
        for (int s = 0; s < qcount; ++s) {
          const int n = qperm[s];
          const float P = p.bwd_pg[((long long)bh * p.N + n) * 2 * CK + 2 * j];
          loadScaledQuery<Cfg>(p, hi, n, lane, rn);
#pragma unroll
          for (int a = 0; a < Lanes<D>::K; ++a)
            rn.x[a] -= c.x[a];
          dOn.loadF(p.dout + doRow(p, hi.b, hi.h, n), lane);
          const float A = rn.dotWith(kc), Bv = dOn.dotWith(vc);
          gkc.axpy(P * A, dOn);
          gtv.axpy(P * Bv, rn);
          vgk = fmaf(P * A, Bv, vgk);
        }
        return vgk;
      };
      auto loadKey = [&](int l) {
        kl.template loadT<T>(p.k, kRow(p, kh, l), lane);
        vl.template loadT<T>(p.v, vRow(p, kh, l), lane);
        const float w = expf(c.dotWith(kl) - lnm);
#pragma unroll
        for (int a = 0; a < Lanes<D>::K; ++a)
          kc.x[a] = kl.x[a] - kb.x[a];
#pragma unroll
        for (int a = 0; a < Lanes<DV>::K; ++a)
          vc.x[a] = vl.x[a] - vb.x[a];
        return w;
      };

      if constexpr (kDipole) { // <G, Sigma_ij> = sum_l w_l vc.G kc
        float mine = 0.f;
        for (int t = warp; t < kcount; t += kBwdWarps) {
          const float w = loadKey(kperm[t]);
          Lanes<DV> gkc;
          Lanes<D> gtv;
          mine = fmaf(w, dipoleSums(gkc, gtv), mine);
        }
        if (lane == 0)
          wsum[warp] = mine;
        __syncthreads();
        if (tid == 0) {
          float s = 0.f;
          for (int w = 0; w < kBwdWarps; ++w)
            s += wsum[w];
          gSigma = s;
        }
        __syncthreads();
      }

      acc.zero();
      for (int t = warp; t < kcount; t += kBwdWarps) {
        const int l = kperm[t];
        const float w = loadKey(l);
        float a = gL + gk.dotWith(kc) + gv.dotWith(vc);
        dk.zero();
        dv.zero();
        if constexpr (kDipole) {
          Lanes<DV> gkc;
          Lanes<D> gtv;
          a += dipoleSums(gkc, gtv) - gSigma;
          dk.axpy(w, gtv);
          dv.axpy(w, gkc);
        }
        const float da = w * a;
        dk.axpy(w, gk);
        dk.axpy(da, c);
        dv.axpy(w, gv);
        acc.axpy(da, kl);
        Lanes<D> ok;
        Lanes<DV> ov;
        ok.loadF(dkRow(l), lane);
        ov.loadF(dvRow(l), lane);
#pragma unroll
        for (int q = 0; q < Lanes<D>::K; ++q)
          ok.x[q] += dk.x[q];
#pragma unroll
        for (int q = 0; q < Lanes<DV>::K; ++q)
          ov.x[q] += dv.x[q];
        ok.store(dkRow(l), lane);
        ov.store(dvRow(l), lane);
      }
      acc.store(part[warp], lane);
      __syncthreads();
      for (int d = tid; d < D; d += kBwdThreads) {
        float s = 0.f;
        for (int w = 0; w < kBwdWarps; ++w)
          s += part[w][d];
        out[d] = s;
      }
    }
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_KEYS_CUH
