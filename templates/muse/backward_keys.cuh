//===- backward_keys.cuh - Backward stage 1 and the near field for keys ---===//
//
// Block (j, kh) owns the keys of key cluster j of kv head kh: it writes their
// dk and dv rows alone (no atomics), visiting the query heads of its GQA group
// and their query clusters i in ascending order. Per pair (i, j):
//   far pair (ALGORITHM.md section 5, stage 1; w_l = e^{qbar.k_l - lnmass},
//   kc = k_l - kbar, vc = v_l - vbar; gL, gK, gV are the sums over the
//   members of i that backward_pairs left in bwd_pairs):
//     gL = sum g_nj,  gK = sum g_nj r_n,  gV = sum P_nj dO_n
//     G  = sum P_nj dO_n r_n^T   (order 1, Dv x D, formed per pair and chunk)
//     a_l  = gL + gK.kc + gV.vc + [order 1] (vc.G kc - <G, Sigma_ij>)
//     dk_l += w_l gK + w_l a_l qbar + [order 1] w_l G^T vc
//     dv_l += w_l gV + [order 1] w_l G kc
//     dL/dqbar_i (stage-1 part for j) = sum_l w_l a_l k_l -> bwd_dqbar[i, j]
//   with <G, Sigma_ij> = sum_l w_l vc.G kc (= sum_n P_nj dO_n . Sigma_ij r_n).
//   near pair: every member n of i, exactly (after the far pairs):
//     p_nl = e^{x_n.k_l - lse_n},  g = p_nl (dO_n.v_l - delta_n + dlse_n)
//     dk_l += g x_n,  dv_l += p_nl dO_n
// The far pairs run on the tensor cores for 16-bit inputs with D + Dv <= 128
// (order 0 keysFar0Mma in backward_keys_mma.cuh, order 1 keysFar1Mma), else
// as small fp32 products of shared-memory tiles (keysFar0, keysFar1); order 1
// forms G once per pair and chunk of keys (from the members of i) and uses
// <G, Sigma_ij> = gL - gV.vbar + sum_n P_nj (delta_n - dlse_n) instead of a
// first sweep over the keys. Every sum runs in a fixed order: the results do
// not depend on scheduling.
// Grid (CK, B*Hkv), block kBwdThreads.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_KEYS_CUH
#define MUSE_TEMPLATES_BACKWARD_KEYS_CUH

#include "muse/backward_common.cuh"
#include "muse/backward_keys_mma.cuh"
#include "muse/smem_gemm.cuh"

namespace muse {

/// Key cluster j of kv head kh has no keys: no stage-1 term for any pair
/// (i, j), so its dq̄ rows are zero. The far-field kernels below assume at
/// least one key.
template <class Cfg> __device__ void keysEmptyCluster(const MuseParams &p, int j, int kh) {
  constexpr int D = Cfg::D, CQ = Cfg::CQ, CK = Cfg::CK;
  const int b = kh / p.Hkv, hk = kh - b * p.Hkv, group = p.H / p.Hkv;
  for (int g = 0; g < group; ++g) {
    const int bh = b * p.H + hk * group + g;
    for (int e = threadIdx.x; e < CQ * D; e += kBwdThreads) {
      const int i = e / D, d = e - i * D;
      p.bwd_dqbar[(((long long)bh * CQ + i) * CK + j) * D + d] = 0.f;
    }
  }
}

/// The rows kk < kn of a chunk's gradient micro tile (row kk: key kperm[kk])
/// stored into `grad` at row(key) (acausal) or added onto it (causal levels).
template <class Mt, int TM, int TN, class Row>
__device__ __forceinline__ void storeKeyTile(const Mt &mt, const float (&acc)[TM][TN], Row row,
                                             const int *kperm, int kn, bool add) {
#pragma unroll
  for (int a = 0; a < TM; ++a) {
    const int kk = mt.row(a);
    if (kk >= kn)
      continue;
    float *r = row(kperm[kk]);
#pragma unroll
    for (int c = 0; c < TN; ++c)
      if (mt.valid(a, c))
        r[mt.col(c)] = add ? r[mt.col(c)] + acc[a][c] : acc[a][c];
  }
}

/// The same for a chunk's gradient rows held in shared memory (kn rows of W floats).
template <int W, class Row>
__device__ __forceinline__ void storeKeyRows(const float *src, Row row, const int *kperm, int kn, bool add) {
  for (int e = threadIdx.x; e < kn * W; e += kBwdThreads) {
    const int kk = e / W, a = e - kk * W;
    float *r = row(kperm[kk]);
    r[a] = add ? r[a] + src[e] : src[e];
  }
}

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
    storeKeyTile(mK, dk, [&](int m) { return p.dk + dkRowOff(p, kh, m); }, kperm + k0, kn, add);
    storeKeyTile(mV, dv, [&](int m) { return p.dv + dvRowOff(p, kh, m); }, kperm + k0, kn, add);
  }
}

/// Tiles of the order-1 far field (fp32 products of shared-memory tiles,
/// every input type): chunks of LK keys of cluster j meet one query cluster
/// i at a time; G_ij is formed DVT value rows a pass from tiles of MT members.
template <class Cfg> struct KeyDipoleTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV;
  static constexpr int LK = D + DV <= 128 ? 32 : 16, MT = 16;
  static constexpr int DVT = cmin(DV, floorPow2(2048 / D)); // G rows a pass: 8 KB
  static constexpr int DP = D + 1, VP = DV + 1, TP = DVT + 1;
  static constexpr int MEMBERS = MT * DP + MT * TP + MT; // Rm, Pm, cm of a member tile
  static constexpr int floats = LK * DP + LK * VP + LK * DV + DVT * DP + cmax(MEMBERS, LK * TP) + 3 * LK +
                                4 * D + 2 * DV + DVT + kBwdWarps * D + 1;
  static_assert(4 * floats <= kSharedBudget, "order-1 key tiles exceed 48 KB of shared memory");
};

/// Order 1, far pairs, for the keys of cluster j in chunks of LK. Per chunk,
/// per head of the group and far query cluster i (gL, gK, gV of bwd_pairs;
/// w_l = e^{qbar.k_l - lnmass}, kc = k - kbar_ij, vc = v - vbar_ij):
///   G_ij = sum_n P_nj dO_n r_n^T, formed DVT value rows a pass from the
///          members of i (MT at a time)
///   GKC  = K G^T - (G kbar)^T     (G kc_l, Dv per key)
///   GTV  = V G - (G^T vbar)^T     (G^T vc_l, D per key)
///   <G, Sigma_ij> = sum_n P_nj dO_n . Sigma_ij r_n
///                 = gL - gV . vbar + sum_n P_nj (delta_n - dlse_n)
///     (g_nj = P_nj (dO_n . vbar + dO_n . Sigma_ij r_n - delta_n + dlse_n)),
///   so a_l = gL + gK.kc + gV.vc + vc.GKC_l - <G, Sigma> needs no second
///   sweep over the keys; then
///   dk_l += w_l (gK + GTV_l + a_l qbar),  dv_l += w_l (gV + GKC_l)
///   dqbar[i, j] (+)= sum_l w_l a_l k_l   (the first chunk stores, later ones add)
/// dk in registers and dv in shared memory over all pairs; the chunk's rows
/// are stored (acausal) or added (causal levels) once. A G_ij costs |i| D Dv
/// multiply-adds a chunk, its application 2 LK D Dv: once a pair where
/// |j| <= LK.
template <class Cfg> __device__ void keysFar1(const MuseParams &p, int j, int kh, float *smem) {
  using Tl = KeyDipoleTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  constexpr int LK = Tl::LK, MT = Tl::MT, DVT = Tl::DVT, DP = Tl::DP, VP = Tl::VP, TP = Tl::TP;
  static_assert(DV % DVT == 0, "value-row passes must divide the value dim");
  using T = typename Cfg::T;
  float *Ks = smem, *Vs = Ks + LK * DP, *dvS = Vs + LK * VP, *Gs = dvS + LK * DV;
  float *uni = Gs + DVT * DP; // a member tile while G forms, then GKC
  float *Rm = uni, *Pm = Rm + MT * DP, *cm = Pm + MT * TP, *GKC = uni;
  float *wS = uni + cmax(Tl::MEMBERS, LK * TP), *vgkS = wS + LK, *aS = vgkS + LK;
  float *cen = aS + LK, *kb = cen + D, *gK = kb + D, *vb = gK + D, *gV = vb + DV, *Gkb = gV + DV, *Gtv = Gkb + DVT;
  float *part = Gtv + D, *gSig = part + kBwdWarps * D;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int b = kh / p.Hkv, hk = kh - b * p.Hkv, group = p.H / p.Hkv;
  const int *koff = p.k_offsets + (long long)kh * (CK + 1);
  const int kstart = koff[j], kcount = koff[j + 1] - kstart;
  const int *kperm = p.k_perm + (long long)kh * p.M + kstart;
  const bool add = p.seg_count > 0; // causal levels add onto dk, dv

  const MicroTile<DVT, D, kBwdThreads> mG(tid);
  const MicroTile<LK, DVT, kBwdThreads> mC(tid);
  const MicroTile<LK, D, kBwdThreads> mK(tid);
  for (int k0 = 0; k0 < kcount; k0 += LK) {
    const int kn = cmin(LK, kcount - k0);
    __syncthreads(); // the previous chunk's tiles are no longer read
    for (int e = tid; e < LK * D; e += kBwdThreads) {
      const int kk = e / D, d = e - kk * D;
      Ks[kk * DP + d] = kk < kn ? loadf<T>(p.k, kRow(p, kh, kperm[k0 + kk]) + d) : 0.f;
    }
    for (int e = tid; e < LK * DV; e += kBwdThreads) {
      const int kk = e / DV, d = e - kk * DV;
      Vs[kk * VP + d] = kk < kn ? loadf<T>(p.v, vRow(p, kh, kperm[k0 + kk]) + d) : 0.f;
      dvS[e] = 0.f;
    }
    float dk[decltype(mK)::TM][decltype(mK)::TN] = {};
    for (int g = 0; g < group; ++g) {
      const int bh = b * p.H + hk * group + g;
      const HeadIndex hi(p, bh);
      const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
      for (int i = 0; i < CQ; ++i) {
        float *out = p.bwd_dqbar + (((long long)bh * CQ + i) * CK + j) * D;
        const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
        if (qcount == 0 || isNearPair<Cfg>(p, bh, i, j)) { // uniform over the block
          if (k0 == 0)
            for (int d = tid; d < D; d += kBwdThreads)
              out[d] = 0.f; // no stage-1 term: near pairs are exact, empty ones absent
          continue;
        }
        const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
        const float *sum_ij = p.summaries + (((long long)bh * CQ + i) * CK + j) * F;
        const float *pair = p.bwd_pairs + (((long long)bh * CQ + i) * CK + j) * F;
        const float lnm = sum_ij[0], gL = pair[0];
        __syncthreads(); // the previous pair is done with the vectors, wS, aS, part
        for (int d = tid; d < D; d += kBwdThreads) {
          cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];
          kb[d] = sum_ij[1 + d];
          gK[d] = pair[1 + d];
        }
        for (int a = tid; a < DV; a += kBwdThreads) {
          vb[a] = sum_ij[1 + D + a];
          gV[a] = pair[1 + D + a];
        }
        __syncthreads();
        for (int l = warp; l < LK; l += kBwdWarps) {
          float s = 0.f;
          for (int d = lane; d < D; d += 32)
            s = fmaf(cen[d], Ks[l * DP + d], s);
          s = warpSum(s);
          if (lane == 0) {
            wS[l] = l < kn ? expf(s - lnm) : 0.f;
            vgkS[l] = 0.f;
          }
        }
        float gt[decltype(mK)::TM][decltype(mK)::TN] = {};
        float sP = 0.f; // sum_n P_nj (delta_n - dlse_n), thread 0's running sum
        for (int a0 = 0; a0 < DV; a0 += DVT) {
          float gg[decltype(mG)::TM][decltype(mG)::TN] = {};
          for (int s0 = 0; s0 < qcount; s0 += MT) {
            const int tn = cmin(MT, qcount - s0);
            __syncthreads(); // the previous member tile (or GKC) is no longer read
            for (int e = tid; e < MT * D; e += kBwdThreads) {
              const int r = e / D, d = e - r * D;
              Rm[r * DP + d] =
                  r < tn ? scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, qperm[s0 + r]) + d)) - cen[d] : 0.f;
            }
            for (int e = tid; e < MT * DVT; e += kBwdThreads) {
              const int r = e / DVT, a = e - r * DVT;
              float v = 0.f;
              if (r < tn) {
                const int n = qperm[s0 + r];
                v = p.bwd_pg[((long long)bh * p.N + n) * 2 * CK + 2 * j] *
                    loadf<T>(p.dout, doRow(p, hi.b, hi.h, n) + a0 + a);
              }
              Pm[r * TP + a] = v;
            }
            if (a0 == 0)
              for (int r = tid; r < MT; r += kBwdThreads) {
                float c = 0.f;
                if (r < tn) {
                  const int n = qperm[s0 + r];
                  c = p.bwd_pg[((long long)bh * p.N + n) * 2 * CK + 2 * j] *
                      (p.bwd_delta[globalRow(p, bh, n)] - rowDLse(p, bh, n));
                }
                cm[r] = c;
              }
            __syncthreads();
            gemmAccumulate<1, TP, DP, 1>(mG, gg, Pm, Rm, tn); // G(a, d) += P dO_a r_d
            if (a0 == 0 && tid == 0)
              for (int r = 0; r < tn; ++r)
                sP += cm[r];
          }
          __syncthreads(); // the member tiles are no longer read (GKC reuses them)
#pragma unroll
          for (int r = 0; r < decltype(mG)::TM; ++r)
#pragma unroll
            for (int c = 0; c < decltype(mG)::TN; ++c)
              if (mG.valid(r, c))
                Gs[mG.row(r) * DP + mG.col(c)] = gg[r][c];
          if (a0 == 0 && tid == 0) {
            float s = gL;
            for (int a = 0; a < DV; ++a)
              s = fmaf(-gV[a], vb[a], s);
            *gSig = s + sP;
          }
          __syncthreads(); // Gs
          for (int a = tid; a < DVT; a += kBwdThreads) {
            float s = 0.f;
            for (int d = 0; d < D; ++d)
              s = fmaf(Gs[a * DP + d], kb[d], s);
            Gkb[a] = s;
          }
          for (int d = tid; d < D; d += kBwdThreads) { // this pass's share of G^T vbar
            float s = 0.f;
            for (int a = 0; a < DVT; ++a)
              s = fmaf(Gs[a * DP + d], vb[a0 + a], s);
            Gtv[d] = s;
          }
          {
            float c[decltype(mC)::TM][decltype(mC)::TN] = {};
            gemmAccumulate<DP, 1, 1, DP>(mC, c, Ks, Gs, D); // (K G^T)(l, a)
#pragma unroll
            for (int r = 0; r < decltype(mC)::TM; ++r)
#pragma unroll
              for (int q = 0; q < decltype(mC)::TN; ++q)
                if (mC.valid(r, q))
                  GKC[mC.row(r) * TP + mC.col(q)] = c[r][q];
          }
          gemmAccumulate<VP, 1, DP, 1>(mK, gt, Vs + a0, Gs, DVT); // (V G)(l, d)
          __syncthreads(); // GKC, Gkb, Gtv
#pragma unroll
          for (int r = 0; r < decltype(mK)::TM; ++r)
#pragma unroll
            for (int c = 0; c < decltype(mK)::TN; ++c)
              gt[r][c] -= Gtv[mK.valid(r, c) ? mK.col(c) : 0];
          for (int l = warp; l < kn; l += kBwdWarps) {
            float s = 0.f;
            const float w = wS[l];
            for (int a = lane; a < DVT; a += 32) {
              const float gkc = GKC[l * TP + a] - Gkb[a];
              s = fmaf(Vs[l * VP + a0 + a] - vb[a0 + a], gkc, s);
              dvS[l * DV + a0 + a] = fmaf(w, gV[a0 + a] + gkc, dvS[l * DV + a0 + a]);
            }
            s = warpSum(s);
            if (lane == 0)
              vgkS[l] += s;
          }
        }
        __syncthreads(); // vgkS, gSig
        {
          const float gs = *gSig;
          float acc[cdiv(D, 32)] = {};
          for (int l = warp; l < kn; l += kBwdWarps) {
            float s = 0.f;
            for (int d = lane; d < D; d += 32)
              s = fmaf(gK[d], Ks[l * DP + d] - kb[d], s);
            for (int a = lane; a < DV; a += 32)
              s = fmaf(gV[a], Vs[l * VP + a] - vb[a], s);
            s = warpSum(s);
            const float al = gL + s + vgkS[l] - gs, wa = wS[l] * al;
            if (lane == 0)
              aS[l] = al;
#pragma unroll
            for (int u = 0; u < cdiv(D, 32); ++u)
              if (lane + 32 * u < D)
                acc[u] = fmaf(wa, Ks[l * DP + lane + 32 * u], acc[u]);
          }
#pragma unroll
          for (int u = 0; u < cdiv(D, 32); ++u)
            if (lane + 32 * u < D)
              part[warp * D + lane + 32 * u] = acc[u];
        }
        __syncthreads(); // aS, part
#pragma unroll
        for (int r = 0; r < decltype(mK)::TM; ++r)
#pragma unroll
          for (int c = 0; c < decltype(mK)::TN; ++c) {
            if (!mK.valid(r, c))
              continue;
            const int l = mK.row(r), d = mK.col(c);
            if (l < kn)
              dk[r][c] = fmaf(wS[l], gK[d] + gt[r][c] + aS[l] * cen[d], dk[r][c]);
          }
        for (int d = tid; d < D; d += kBwdThreads) {
          float s = 0.f;
          for (int w = 0; w < kBwdWarps; ++w)
            s += part[w * D + d];
          out[d] = k0 == 0 ? s : out[d] + s;
        }
      }
    }
    __syncthreads(); // dvS is complete
    storeKeyTile(mK, dk, [&](int m) { return p.dk + dkRowOff(p, kh, m); }, kperm + k0, kn, add);
    storeKeyRows<DV>(dvS, [&](int m) { return p.dv + dvRowOff(p, kh, m); }, kperm + k0, kn, add);
  }
}

/// Tiles of the order-1 far field on the tensor cores (16-bit inputs,
/// D + Dv <= 128): keysFar1's schedule with G_ij, K G^T and V G as mma.sync
/// products of T tiles (fp32 accumulators); the raw keys and values are kept
/// as T only (exact: they are the inputs).
template <class Cfg> struct KeyDipoleMmaTiles {
  using T = typename Cfg::T;
  static constexpr int D = Cfg::D, DV = Cfg::DV, LK = 32, MT = 32;
  static constexpr int LDK = D + 8, LDV = DV + 8; // padded rows: conflict-free ldmatrix
  static constexpr int bytes = 2 * (LK * LDK + LK * LDV + DV * LDK) +
                               cmax(2 * (MT * LDK + MT * LDV) + 4 * MT, 4 * LK * (DV + 1)) +
                               4 * (LK * (D + 1) + LK * DV + 2 * LK + 4 * D + 3 * DV + kBwdWarps * D + 1);
  static constexpr bool usable = TensorCoreType<T>::value && D % 16 == 0 && DV % 16 == 0 && D + DV <= 128 &&
                                 bytes <= kSharedBudget;
};

/// keysFar1 on the tensor cores. Per chunk of LK keys and far pair (i, j):
/// G_ij = (P dO)^T R from member tiles (T, MT members: r rounded to T as the
/// forward rounds it, P_nj dO_n rounded once), accumulated in registers and
/// rounded to T once; GKC = K G^T and GTV = V G from the T tiles into fp32
/// shared memory; the per-key epilogue is keysFar1's (fp32).
template <class Cfg> __device__ void keysFar1Mma(const MuseParams &p, int j, int kh) {
  using Tl = KeyDipoleMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  constexpr int LK = Tl::LK, MT = Tl::MT, LDK = Tl::LDK, LDV = Tl::LDV, VP = DV + 1, DP = D + 1;
  using MbG = MmaBlocks<DV, D, kBwdWarps>;
  using MbC = MmaBlocks<LK, DV, kBwdWarps>;
  using MbT = MmaBlocks<LK, D, kBwdWarps>;
  __shared__ __align__(16) unsigned char raw[Tl::bytes];
  T *Kh = reinterpret_cast<T *>(raw), *Vh = Kh + LK * LDK, *Gh = Vh + LK * LDV;
  unsigned char *uni = reinterpret_cast<unsigned char *>(Gh + DV * LDK);
  T *Rh = reinterpret_cast<T *>(uni), *Ph = Rh + MT * LDK;
  float *cm = reinterpret_cast<float *>(Ph + MT * LDV), *GKC = reinterpret_cast<float *>(uni);
  float *GTV = reinterpret_cast<float *>(uni + cmax(2 * (MT * LDK + MT * LDV) + 4 * MT, 4 * LK * VP));
  float *dvS = GTV + LK * DP, *wS = dvS + LK * DV, *aS = wS + LK;
  float *cen = aS + LK, *kb = cen + D, *gK = kb + D, *Gtv = gK + D, *vb = Gtv + D, *gV = vb + DV, *Gkb = gV + DV;
  float *part = Gkb + DV, *gSig = part + kBwdWarps * D;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int b = kh / p.Hkv, hk = kh - b * p.Hkv, group = p.H / p.Hkv;
  const int *koff = p.k_offsets + (long long)kh * (CK + 1);
  const int kstart = koff[j], kcount = koff[j + 1] - kstart;
  const int *kperm = p.k_perm + (long long)kh * p.M + kstart;
  const bool add = p.seg_count > 0; // causal levels add onto dk, dv

  const MicroTile<LK, D, kBwdThreads> mK(tid);
  for (int k0 = 0; k0 < kcount; k0 += LK) {
    const int kn = cmin(LK, kcount - k0);
    __syncthreads(); // the previous chunk's tiles are no longer read
    for (int e = tid; e < LK * (D + DV) / 8; e += kBwdThreads) { // 8-element row segments
      const int kk = e / ((D + DV) / 8), sg = 8 * (e - kk * ((D + DV) / 8));
      float x[8] = {};
      if (kk < kn) {
        const int m = kperm[k0 + kk];
        load8<T>(sg < D ? p.k : p.v, sg < D ? kRow(p, kh, m) + sg : vRow(p, kh, m) + sg - D, x);
      }
      store8<T>(sg < D ? &Kh[kk * LDK + sg] : &Vh[kk * LDV + sg - D], x);
    }
    for (int e = tid; e < LK * DV; e += kBwdThreads)
      dvS[e] = 0.f;
    float dk[decltype(mK)::TM][decltype(mK)::TN] = {};
    for (int g = 0; g < group; ++g) {
      const int bh = b * p.H + hk * group + g;
      const HeadIndex hi(p, bh);
      const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
      for (int i = 0; i < CQ; ++i) {
        float *out = p.bwd_dqbar + (((long long)bh * CQ + i) * CK + j) * D;
        const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
        if (qcount == 0 || isNearPair<Cfg>(p, bh, i, j)) { // uniform over the block
          if (k0 == 0)
            for (int d = tid; d < D; d += kBwdThreads)
              out[d] = 0.f; // no stage-1 term: near pairs are exact, empty ones absent
          continue;
        }
        const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
        const float *sum_ij = p.summaries + (((long long)bh * CQ + i) * CK + j) * F;
        const float *pair = p.bwd_pairs + (((long long)bh * CQ + i) * CK + j) * F;
        const float lnm = sum_ij[0], gL = pair[0];
        __syncthreads(); // the previous pair is done with the vectors, wS, aS, part, Gh
        for (int d = tid; d < D; d += kBwdThreads) {
          cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];
          kb[d] = sum_ij[1 + d];
          gK[d] = pair[1 + d];
        }
        for (int a = tid; a < DV; a += kBwdThreads) {
          vb[a] = sum_ij[1 + D + a];
          gV[a] = pair[1 + D + a];
        }
        __syncthreads();
        for (int l = warp; l < LK; l += kBwdWarps) {
          float s = 0.f;
          for (int d = lane; d < D; d += 32)
            s = fmaf(cen[d], toFloat(Kh[l * LDK + d]), s);
          s = warpSum(s);
          if (lane == 0)
            wS[l] = l < kn ? expf(s - lnm) : 0.f;
        }
        // G_ij = sum over the members of P_nj dO_n r_n^T (DV x D).
        float G[MbG::NB][2][4] = {};
        float sP = 0.f; // sum_n P_nj (delta_n - dlse_n), thread 0's running sum
        for (int s0 = 0; s0 < qcount; s0 += MT) {
          const int tn = cmin(MT, qcount - s0);
          __syncthreads(); // the previous member tile is no longer read
          for (int e = tid; e < MT * (D + DV) / 8; e += kBwdThreads) { // 8-element row segments
            const int r = e / ((D + DV) / 8), sg = 8 * (e - r * ((D + DV) / 8));
            float x[8] = {};
            if (r < tn) {
              const int n = qperm[s0 + r];
              if (sg < D) {
                load8<T>(p.q, qRow(p, hi.b, hi.h, n) + sg, x);
#pragma unroll
                for (int c = 0; c < 8; ++c)
                  x[c] = scaled(p, x[c]) - cen[sg + c];
              } else {
                load8<T>(p.dout, doRow(p, hi.b, hi.h, n) + sg - D, x);
                const float P = p.bwd_pg[((long long)bh * p.N + n) * 2 * CK + 2 * j];
#pragma unroll
                for (int c = 0; c < 8; ++c)
                  x[c] *= P;
              }
            }
            store8<T>(sg < D ? &Rh[r * LDK + sg] : &Ph[r * LDV + sg - D], x);
          }
          for (int r = tid; r < MT; r += kBwdThreads) {
            float c = 0.f;
            if (r < tn) {
              const int n = qperm[s0 + r];
              c = p.bwd_pg[((long long)bh * p.N + n) * 2 * CK + 2 * j] *
                  (p.bwd_delta[globalRow(p, bh, n)] - rowDLse(p, bh, n));
            }
            cm[r] = c;
          }
          __syncthreads();
          mmaAccumulate<MbG, T>(
              G, (tn + 15) / 16 * 16,
              [&](unsigned(&af)[4], int m0, int kk) { loadATrans<LDV>(af, Ph, m0, kk, lane); },
              [&](unsigned(&bb)[4], int kk, int n0) { loadBTrans<LDK>(bb, Rh, kk, n0, lane); });
          if (tid == 0)
            for (int r = 0; r < tn; ++r)
              sP += cm[r];
        }
        __syncthreads(); // the member tiles are no longer read (GKC reuses them)
        mmaForEach<MbG>(G, [&](int a, int d, float v0, float v1) {
          *reinterpret_cast<unsigned *>(&Gh[a * LDK + d]) = pack2<T>(v0, v1);
        });
        if (tid == 0) {
          float s = gL;
          for (int a = 0; a < DV; ++a)
            s = fmaf(-gV[a], vb[a], s);
          *gSig = s + sP;
        }
        __syncthreads(); // Gh
        for (int a = tid; a < DV; a += kBwdThreads) {
          float s = 0.f;
          for (int d = 0; d < D; ++d)
            s = fmaf(toFloat(Gh[a * LDK + d]), kb[d], s);
          Gkb[a] = s;
        }
        for (int d = tid; d < D; d += kBwdThreads) {
          float s = 0.f;
          for (int a = 0; a < DV; ++a)
            s = fmaf(toFloat(Gh[a * LDK + d]), vb[a], s);
          Gtv[d] = s;
        }
        {
          float c[MbC::NB][2][4] = {};
          mmaAccumulate<MbC, T>(
              c, D, [&](unsigned(&af)[4], int m0, int kk) { loadA<LDK, T>(af, Kh, m0, kk, lane); },
              [&](unsigned(&bb)[4], int kk, int n0) { loadBRows<LDK>(bb, Gh, kk, n0, lane); });
          mmaForEach<MbC>(c, [&](int l, int a, float v0, float v1) {
            GKC[l * VP + a] = v0;
            GKC[l * VP + a + 1] = v1;
          });
        }
        {
          float c[MbT::NB][2][4] = {};
          mmaAccumulate<MbT, T>(
              c, DV, [&](unsigned(&af)[4], int m0, int kk) { loadA<LDV, T>(af, Vh, m0, kk, lane); },
              [&](unsigned(&bb)[4], int kk, int n0) { loadBTrans<LDK>(bb, Gh, kk, n0, lane); });
          mmaForEach<MbT>(c, [&](int l, int d, float v0, float v1) {
            GTV[l * DP + d] = v0;
            GTV[l * DP + d + 1] = v1;
          });
        }
        __syncthreads(); // GKC, GTV, Gkb, Gtv, gSig
        {
          const float gs = *gSig;
          float acc[cdiv(D, 32)] = {};
          for (int l = warp; l < kn; l += kBwdWarps) {
            const float w = wS[l];
            float s = 0.f, vgk = 0.f;
            for (int d = lane; d < D; d += 32)
              s = fmaf(gK[d], toFloat(Kh[l * LDK + d]) - kb[d], s);
            for (int a = lane; a < DV; a += 32) {
              const float gkc = GKC[l * VP + a] - Gkb[a], vc = toFloat(Vh[l * LDV + a]) - vb[a];
              s = fmaf(gV[a], vc, s);
              vgk = fmaf(vc, gkc, vgk);
              dvS[l * DV + a] = fmaf(w, gV[a] + gkc, dvS[l * DV + a]);
            }
            s = warpSum(s + vgk);
            const float al = gL + s - gs, wa = w * al;
            if (lane == 0)
              aS[l] = al;
#pragma unroll
            for (int u = 0; u < cdiv(D, 32); ++u)
              if (lane + 32 * u < D)
                acc[u] = fmaf(wa, toFloat(Kh[l * LDK + lane + 32 * u]), acc[u]);
          }
#pragma unroll
          for (int u = 0; u < cdiv(D, 32); ++u)
            if (lane + 32 * u < D)
              part[warp * D + lane + 32 * u] = acc[u];
        }
        __syncthreads(); // aS, part
#pragma unroll
        for (int r = 0; r < decltype(mK)::TM; ++r)
#pragma unroll
          for (int c = 0; c < decltype(mK)::TN; ++c) {
            if (!mK.valid(r, c))
              continue;
            const int l = mK.row(r), d = mK.col(c);
            if (l < kn)
              dk[r][c] = fmaf(wS[l], gK[d] + GTV[l * DP + d] - Gtv[d] + aS[l] * cen[d], dk[r][c]);
          }
        for (int d = tid; d < D; d += kBwdThreads) {
          float s = 0.f;
          for (int w = 0; w < kBwdWarps; ++w)
            s += part[w * D + d];
          out[d] = k0 == 0 ? s : out[d] + s;
        }
      }
    }
    __syncthreads(); // dvS is complete
    storeKeyTile(mK, dk, [&](int m) { return p.dk + dkRowOff(p, kh, m); }, kperm + k0, kn, add);
    storeKeyRows<DV>(dvS, [&](int m) { return p.dv + dvRowOff(p, kh, m); }, kperm + k0, kn, add);
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
  const int *koff = p.k_offsets + (long long)kh * (Cfg::CK + 1);
  if (koff[j + 1] == koff[j]) { // uniform over the block; no near pair has keys either
    keysEmptyCluster<Cfg>(p, j, kh);
    return;
  }
  if constexpr (Cfg::ORDER == 0 && KeyMmaTiles<Cfg>::usable) {
    keysFar0Mma<Cfg>(p, j, kh);
  } else if constexpr (Cfg::ORDER == 0) {
    using Tl = KeyTiles<Cfg>;
    // One buffer for every tile size (static shared memory of separate
    // instantiations would add up).
    __shared__ float smem[Tl::floats(Tl::KT)];
    const int kcount = koff[j + 1] - koff[j];
    if (kcount <= 8)
      keysFar0<Cfg, 8>(p, j, kh, smem);
    else if (kcount <= 16 || Tl::KT == 16)
      keysFar0<Cfg, 16>(p, j, kh, smem);
    else
      keysFar0<Cfg, Tl::KT>(p, j, kh, smem);
  } else if constexpr (KeyDipoleMmaTiles<Cfg>::usable) {
    keysFar1Mma<Cfg>(p, j, kh);
  } else {
    __shared__ float smem[KeyDipoleTiles<Cfg>::floats];
    keysFar1<Cfg>(p, j, kh, smem);
  }
  if constexpr (Cfg::NEAR > 0) {
    __syncthreads(); // the far field's dk, dv rows are written (and visible to the block)
    keysNear<Cfg>(p, j, kh);
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_KEYS_CUH
