//===- backward_keys.cuh - Backward stage 1 and the near field for keys ---===//
//
// Block (j, kh) owns the keys of key cluster j of kv head kh: it writes their
// dk and dv rows alone (no atomics), visiting the query heads of its GQA group
// and their query clusters i in ascending order. Per pair (i, j):
//   far pair (ALGORITHM.md section 5, stage 1; w_l = e^{qbar.k_l - lnmass},
//   kc = k_l - kbar, vc = v_l - vbar; gL, gK, gV are the sums over the
//   members of i that backward_pairs left in bwd_pairs):
//     gL = sum g_nj,  gK = sum g_nj r_n,  gV = sum P_nj dO_n
//     G  = sum P_nj dO_n r_n^T   (order 1; never formed: G kc and G^T vc are
//                                 sums over n)
//     a_l  = gL + gK.kc + gV.vc + [order 1] (vc.G kc - <G, Sigma_ij>)
//     dk_l += w_l gK + w_l a_l qbar + [order 1] w_l G^T vc
//     dv_l += w_l gV + [order 1] w_l G kc
//     dL/dqbar_i (stage-1 part for j) = sum_l w_l a_l k_l -> bwd_dqbar[i, j]
//   with <G, Sigma_ij> = sum_l w_l vc.G kc, a first pass over the keys.
//   near pair: every member n of i, exactly (after the far pairs):
//     p_nl = e^{x_n.k_l - lse_n},  g = p_nl (dO_n.v_l - delta_n + dlse_n)
//     dk_l += g x_n,  dv_l += p_nl dO_n
// Order 0 runs the far pairs on the tensor cores for 16-bit inputs with
// D + Dv <= 128 (keysFar0Mma, backward_keys_mma.cuh), else as small fp32
// products of shared-memory tiles (keysFar0); order 1 keeps one warp per key
// (keysFar1). Every sum runs in a
// fixed order: the results do not depend on scheduling.
// Grid (CK, B*Hkv), block kBwdThreads.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_KEYS_CUH
#define MUSE_TEMPLATES_BACKWARD_KEYS_CUH

#include "muse/backward_common.cuh"
#include "muse/backward_keys_mma.cuh"
#include "muse/smem_gemm.cuh"

namespace muse {

/// Tiles of the order-0 far field: up to KT keys of j (staged once per
/// chunk) meet IT query clusters at a time. Rows are padded by one float so
/// that threads reading one column of several rows hit different banks.
/// Sized to stay under the static shared-memory limit for D, Dv up to 128.
template <class Cfg> struct KeyTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV;
  static constexpr int KT = D + DV <= 128 ? 32 : 16, IT = 16;
  static constexpr int DP = D + 1, VP = DV + 1, IP = IT + 1;
  /// Floats of shared memory for chunks of `kt` keys (keysFar0's carving).
  __host__ __device__ static constexpr int floats(int kt) {
    return kt * (DP + VP + 2 * IP) + IT * (2 * DP + VP + 2);
  }
};

/// Order 0, far pairs, for the keys of cluster j in chunks of KT. Per chunk,
/// per head of the group and tile of IT query clusters (with the pair sums
/// gK, gV of bwd_pairs and off_i = gL - gK.kbar_ij - gV.vbar_ij, which
/// backward_pairs leaves in the first slot of the pair at order 0):
///   W  = e^{K C^T - lnm}            (KT x IT; 0 for near, empty or absent pairs)
///   WA = W o (K GK^T + V GV^T + off) (a_li = gL + gK.kc_l + gV.vc_l)
///   dk += W GK + WA C,  dv += W GV  (registers, over heads and tiles)
///   dqbar[i, j] (+)= WA^T K         (the first chunk stores, later ones add)
/// then the chunk's dk, dv rows are stored (acausal) or added (causal levels).
/// KT (<= KeyTiles::KT) is the chunk the caller picked for the cluster's
/// size: small clusters (short causal segments) take small tiles instead of
/// computing mostly-empty rows. `smem` holds KeyTiles::floats(KT) floats.
template <class Cfg, int KT>
__device__ void keysFar0(const MuseParams &p, int j, int kh, float *smem) {
  using Tl = KeyTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  constexpr int IT = Tl::IT, DP = Tl::DP, VP = Tl::VP, IP = Tl::IP;
  using T = typename Cfg::T;
  float *Ks = smem, *Vs = Ks + KT * DP, *Ws = Vs + KT * VP, *WAs = Ws + KT * IP;
  float *Cs = WAs + KT * IP, *GKs = Cs + IT * DP, *GVs = GKs + IT * DP, *lnmS = GVs + IT * VP;
  float *offS = lnmS + IT;

  const int tid = threadIdx.x;
  const int b = kh / p.Hkv, hk = kh - b * p.Hkv, group = p.H / p.Hkv;
  const int *koff = p.k_offsets + (long long)kh * (CK + 1);
  const int kstart = koff[j], kcount = koff[j + 1] - kstart;
  const int *kperm = p.k_perm + (long long)kh * p.M + kstart;
  const bool add = p.seg_count > 0; // causal levels add onto dk, dv

  if (kcount == 0) { // no stage-1 term for any pair of j
    for (int g = 0; g < group; ++g) {
      const int bh = b * p.H + hk * group + g;
      for (int e = tid; e < CQ * D; e += kBwdThreads) {
        const int i = e / D, d = e - i * D;
        p.bwd_dqbar[(((long long)bh * CQ + i) * CK + j) * D + d] = 0.f;
      }
    }
    return;
  }

  const MicroTile<KT, IT, kBwdThreads> mA(tid);
  const MicroTile<KT, D, kBwdThreads> mK(tid);
  const MicroTile<KT, DV, kBwdThreads> mV(tid);
  const MicroTile<IT, D, kBwdThreads> mQ(tid);
  for (int k0 = 0; k0 < kcount; k0 += KT) {
    const int kn = cmin(KT, kcount - k0);
    __syncthreads(); // the previous chunk's tiles are no longer read
    for (int e = tid; e < KT * D; e += kBwdThreads) {
      const int kk = e / D, d = e - kk * D;
      Ks[kk * DP + d] = kk < kn ? loadf<T>(p.k, kRow(p, kh, kperm[k0 + kk]) + d) : 0.f;
    }
    for (int e = tid; e < KT * DV; e += kBwdThreads) {
      const int kk = e / DV, d = e - kk * DV;
      Vs[kk * VP + d] = kk < kn ? loadf<T>(p.v, vRow(p, kh, kperm[k0 + kk]) + d) : 0.f;
    }
    float dk[decltype(mK)::TM][decltype(mK)::TN] = {};
    float dv[decltype(mV)::TM][decltype(mV)::TN] = {};
    for (int g = 0; g < group; ++g) {
      const int bh = b * p.H + hk * group + g;
      for (int i0 = 0; i0 < CQ; i0 += IT) {
        __syncthreads(); // the previous tile's C, GK, GV, W are no longer read
        const float *pairs = p.bwd_pairs + ((long long)bh * CQ * CK + j) * F;
        for (int e = tid; e < IT * D; e += kBwdThreads) {
          const int ii = e / D, d = e - ii * D, i = i0 + ii;
          const bool in = i < CQ;
          Cs[ii * DP + d] = in ? p.q_centroids[((long long)bh * CQ + i) * D + d] : 0.f;
          GKs[ii * DP + d] = in ? pairs[(long long)i * CK * F + 1 + d] : 0.f;
        }
        for (int e = tid; e < IT * DV; e += kBwdThreads) {
          const int ii = e / DV, d = e - ii * DV, i = i0 + ii;
          GVs[ii * VP + d] = i < CQ ? pairs[(long long)i * CK * F + 1 + D + d] : 0.f;
        }
        keysPairTerms<Cfg, IT>(p, bh, j, i0, pairs, lnmS, offS);
        __syncthreads();
        {
          float s1[decltype(mA)::TM][decltype(mA)::TN] = {};
          float s2[decltype(mA)::TM][decltype(mA)::TN] = {};
          gemmAccumulate<DP, 1, 1, DP>(mA, s1, Ks, Cs, D);
          gemmAccumulate<DP, 1, 1, DP>(mA, s2, Ks, GKs, D);
          gemmAccumulate<VP, 1, 1, VP>(mA, s2, Vs, GVs, DV);
#pragma unroll
          for (int a = 0; a < decltype(mA)::TM; ++a)
#pragma unroll
            for (int c = 0; c < decltype(mA)::TN; ++c) {
              if (!mA.valid(a, c))
                continue;
              const int kk = mA.row(a), ii = mA.col(c);
              const float w = kk < kn ? expf(s1[a][c] - lnmS[ii]) : 0.f;
              Ws[kk * IP + ii] = w;
              WAs[kk * IP + ii] = w * (s2[a][c] + offS[ii]);
            }
        }
        __syncthreads();
        gemmAccumulate<IP, 1, DP, 1>(mK, dk, Ws, GKs, IT);
        gemmAccumulate<IP, 1, DP, 1>(mK, dk, WAs, Cs, IT);
        gemmAccumulate<IP, 1, VP, 1>(mV, dv, Ws, GVs, IT);
        float dq[decltype(mQ)::TM][decltype(mQ)::TN] = {};
        gemmAccumulate<1, IP, DP, 1>(mQ, dq, WAs, Ks, kn);
#pragma unroll
        for (int a = 0; a < decltype(mQ)::TM; ++a)
#pragma unroll
          for (int c = 0; c < decltype(mQ)::TN; ++c) {
            const int i = i0 + mQ.row(a);
            if (!mQ.valid(a, c) || i >= CQ)
              continue;
            float *o = p.bwd_dqbar + (((long long)bh * CQ + i) * CK + j) * D + mQ.col(c);
            *o = k0 == 0 ? dq[a][c] : *o + dq[a][c];
          }
      }
    }
#pragma unroll
    for (int a = 0; a < decltype(mK)::TM; ++a) {
      const int kk = mK.row(a);
      if (kk >= kn)
        continue;
      float *row = p.dk + dkRowOff(p, kh, kperm[k0 + kk]);
#pragma unroll
      for (int c = 0; c < decltype(mK)::TN; ++c)
        if (mK.valid(a, c))
          row[mK.col(c)] = add ? row[mK.col(c)] + dk[a][c] : dk[a][c];
    }
#pragma unroll
    for (int a = 0; a < decltype(mV)::TM; ++a) {
      const int kk = mV.row(a);
      if (kk >= kn)
        continue;
      float *row = p.dv + dvRowOff(p, kh, kperm[k0 + kk]);
#pragma unroll
      for (int c = 0; c < decltype(mV)::TN; ++c)
        if (mV.valid(a, c))
          row[mV.col(c)] = add ? row[mV.col(c)] + dv[a][c] : dv[a][c];
    }
  }
}

/// Order 1, far pairs: one warp per key (keys t, t + warps, ...), the pair
/// sums read from bwd_pairs, G's terms as sums over the members of i.
template <class Cfg> __device__ void keysFar1(const MuseParams &p, int j, int kh) {
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  using T = typename Cfg::T;
  __shared__ float part[kBwdWarps][D], wsum[kBwdWarps];
  __shared__ float gSigma;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
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

  Lanes<D> kl, kc, rn, dk, acc;
  Lanes<DV> vl, vc, dOn, dv;
  for (int g = 0; g < group; ++g) {
    const int h = hk * group + g, bh = b * p.H + h;
    const HeadIndex hi(p, bh);
    const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
    for (int i = 0; i < CQ; ++i) {
      float *out = p.bwd_dqbar + (((long long)bh * CQ + i) * CK + j) * D;
      const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
      if (qcount == 0 || kcount == 0 || isNearPair<Cfg>(p, bh, i, j)) {
        for (int d = tid; d < D; d += kBwdThreads)
          out[d] = 0.f; // no stage-1 term: near pairs are exact, empty ones absent
        continue;
      }
      const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
      const float *sum_ij = p.summaries + (((long long)bh * CQ + i) * CK + j) * F;
      const float *pair = p.bwd_pairs + (((long long)bh * CQ + i) * CK + j) * F;
      const float lnm = sum_ij[0], gL = pair[0];
      Lanes<D> c, kb, gk;
      Lanes<DV> vb, gv;
      c.loadF(p.q_centroids + ((long long)bh * CQ + i) * D, lane);
      kb.loadF(sum_ij + 1, lane);
      vb.loadF(sum_ij + 1 + D, lane);
      gk.loadF(pair + 1, lane);
      gv.loadF(pair + 1 + D, lane);

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
          dOn.template loadT<T>(p.dout, doRow(p, hi.b, hi.h, n), lane);
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

      { // <G, Sigma_ij> = sum_l w_l vc.G kc
        float mine = 0.f;
        for (int t = warp; t < kcount; t += kBwdWarps) {
          const float w = loadKey(kperm[t]);
          Lanes<DV> gkc;
          Lanes<D> gtv;
          mine = fmaf(w, dipoleSums(gkc, gtv), mine);
        }
        __syncthreads(); // the previous pair's gSigma and part are no longer read
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
        Lanes<DV> gkc;
        Lanes<D> gtv;
        a += dipoleSums(gkc, gtv) - gSigma;
        dk.axpy(w, gtv);
        dv.axpy(w, gkc);
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

/// The near pairs of key cluster j, exactly: one warp per key, the members of
/// i in permutation order, added onto the dk, dv rows the far field wrote.
template <class Cfg> __device__ void keysNear(const MuseParams &p, int j, int kh) {
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK;
  using T = typename Cfg::T;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int b = kh / p.Hkv, hk = kh - b * p.Hkv, group = p.H / p.Hkv;
  const int *koff = p.k_offsets + (long long)kh * (CK + 1);
  const int kstart = koff[j], kcount = koff[j + 1] - kstart;
  const int *kperm = p.k_perm + (long long)kh * p.M + kstart;
  Lanes<D> kl, xn, dk;
  Lanes<DV> vl, dOn, dv;
  for (int g = 0; g < group; ++g) {
    const int h = hk * group + g, bh = b * p.H + h;
    const HeadIndex hi(p, bh);
    const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
    for (int i = 0; i < CQ; ++i) {
      const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
      if (qcount == 0 || kcount == 0 || !isNearPair<Cfg>(p, bh, i, j))
        continue;
      const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
      for (int t = warp; t < kcount; t += kBwdWarps) {
        const int l = kperm[t];
        kl.template loadT<T>(p.k, kRow(p, kh, l), lane);
        vl.template loadT<T>(p.v, vRow(p, kh, l), lane);
        dk.zero();
        dv.zero();
        for (int s = 0; s < qcount; ++s) {
          const int n = qperm[s];
          loadScaledQuery<Cfg>(p, hi, n, lane, xn);
          dOn.template loadT<T>(p.dout, doRow(p, hi.b, hi.h, n), lane);
          const float pn = expf(xn.dotWith(kl) - rowLse(p, bh, n));
          const float gn =
              pn * (dOn.dotWith(vl) - p.bwd_delta[globalRow(p, bh, n)] + rowDLse(p, bh, n));
          dk.axpy(gn, xn);
          dv.axpy(pn, dOn);
        }
        float *okRow = p.dk + dkRowOff(p, kh, l);
        float *ovRow = p.dv + dvRowOff(p, kh, l);
        Lanes<D> ok;
        Lanes<DV> ov;
        ok.loadF(okRow, lane);
        ov.loadF(ovRow, lane);
#pragma unroll
        for (int a = 0; a < Lanes<D>::K; ++a)
          ok.x[a] += dk.x[a];
#pragma unroll
        for (int a = 0; a < Lanes<DV>::K; ++a)
          ov.x[a] += dv.x[a];
        ok.store(okRow, lane);
        ov.store(ovRow, lane);
      }
    }
  }
}

template <class Cfg> __device__ void backward_keys(const MuseParams &p) {
  const int j = blockIdx.x, kh = blockIdx.y;
  if constexpr (Cfg::ORDER == 0 && KeyMmaTiles<Cfg>::usable) {
    keysFar0Mma<Cfg>(p, j, kh);
  } else if constexpr (Cfg::ORDER == 0) {
    using Tl = KeyTiles<Cfg>;
    // One buffer for every tile size (static shared memory of separate
    // instantiations would add up).
    __shared__ float smem[Tl::floats(Tl::KT)];
    const int *koff = p.k_offsets + (long long)kh * (Cfg::CK + 1);
    const int kcount = koff[j + 1] - koff[j];
    if (kcount <= 8)
      keysFar0<Cfg, 8>(p, j, kh, smem);
    else if (kcount <= 16 || Tl::KT == 16)
      keysFar0<Cfg, 16>(p, j, kh, smem);
    else
      keysFar0<Cfg, Tl::KT>(p, j, kh, smem);
  } else {
    keysFar1<Cfg>(p, j, kh);
  }
  if constexpr (Cfg::NEAR > 0) {
    __syncthreads(); // the far field's dk, dv rows are written (and visible to the block)
    keysNear<Cfg>(p, j, kh);
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_KEYS_CUH
