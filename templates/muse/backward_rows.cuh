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
// Writes dq_n = dL/dx_n (unscaled and without the centroid term; the centroid
// kernel finishes it), bwd_dr_n = dL/dr_n, bwd_delta_n and (P_nj, g_nj) for
// the key kernel. Grid (CQ, B*H), block kBwdThreads: the members of a query
// cluster as tiles, on the tensor cores for 16-bit inputs with D + Dv <= 128
// (order 0 rowsTiledMma, order 1 rowsDipoleMma), else fp32 shared-memory
// products (rowsTiled, rowsDipole). Order 1 forms Sigma_ij once per chunk of
// members (from the keys of j) and applies it to the chunk as products.
// Causal levels run it on the served view: cluster from `served`, delta and
// lse of the whole sequence, dq += scale * dL/dx_n (templates/README.md).
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_ROWS_CUH
#define MUSE_TEMPLATES_BACKWARD_ROWS_CUH

#include "muse/backward_common.cuh"
#include "muse/backward_window_mma.cuh"
#include "muse/dipole.cuh"
#include "muse/smem_gemm.cuh"

namespace muse {

/// The exact near field of one query row (a warp): dx += sum over the keys l
/// of query cluster i's near clusters of p_l (dO . v_l - delta + dl) k_l,
/// p_l = e^{x . k_l - lse}.
template <class Cfg>
__device__ void rowNearField(const MuseParams &p, const HeadIndex &hi, int bh, int i, const Lanes<Cfg::D> &x,
                             const Lanes<Cfg::DV> &dO, float lse, float delta, float dl, Lanes<Cfg::D> &dx,
                             int lane) {
  using T = typename Cfg::T;
  const int *koff = p.k_offsets + (long long)hi.kh * (Cfg::CK + 1);
  const int *kperm = p.k_perm + (long long)hi.kh * p.M;
  const int *nl = p.near + ((long long)bh * Cfg::CQ + i) * Cfg::NEAR;
  Lanes<Cfg::D> kl;
  Lanes<Cfg::DV> vl;
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

/// Tiles of the order-0 rows: up to QT members of cluster i meet JT key
/// clusters at a time; rows padded by one float (conflict-free columns).
/// Sized to stay under the static shared-memory limit for D, Dv up to 128.
template <class Cfg> struct RowTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV;
  static constexpr int QT = D + DV <= 128 ? 32 : 16, JT = QT;
  static constexpr int DP = D + 1, VP = DV + 1, JP = JT + 1;
  /// Floats of shared memory for chunks of `qt` members (rowsTiled's carving).
  __host__ __device__ static constexpr int floats(int qt) {
    return qt * (DP + VP + JP + 2) + JT * (DP + VP + 1) + D;
  }
};

/// Per member r < mn of a chunk (members[r]: its query row), one warp each:
/// lse and delta - dlse into lseS, cS; acausal calls also store delta_n =
/// dO_n . o_n to bwd_delta (causal levels read the window kernel's).
template <class Cfg>
__device__ void rowsMemberStats(const MuseParams &p, const HeadIndex &hi, int bh, const int *members, int mn,
                                float *lseS, float *cS) {
  constexpr int DV = Cfg::DV;
  using T = typename Cfg::T;
  if (p.seg_count > 0) {
    // Causal levels: delta = dO . o of the merged o (window kernel), so a
    // thread a member, every member's loads at once.
    for (int r = threadIdx.x; r < mn; r += kBwdThreads) {
      const int n = members[r];
      const float delta = p.bwd_delta[globalRow(p, bh, n)];
      lseS[r] = rowLse(p, bh, n);
      cS[r] = delta - rowDLse(p, bh, n);
    }
    return;
  }
  // Acausal: delta = dO . o, a thread a member (every load of the chunk's
  // members in flight at once; no store of this thread comes between them).
  for (int r = threadIdx.x; r < mn; r += kBwdThreads) {
    const int n = members[r];
    const long long orow = oRow(p, hi.b, hi.h, n), drow = doRow(p, hi.b, hi.h, n);
    const float lse = rowLse(p, bh, n), dl = rowDLse(p, bh, n);
    float delta = 0.f;
    if constexpr (TensorCoreType<T>::value) { // 16-bit: element pairs
      const T *o = static_cast<const T *>(p.o_in) + orow, *dO = static_cast<const T *>(p.dout) + drow;
#pragma unroll
      for (int d = 0; d < DV; d += 2) {
        const float2 a = unpack2<T>(ldPair<T>(o + d)), b = unpack2<T>(ldPair<T>(dO + d));
        delta = fmaf(a.x, b.x, delta);
        delta = fmaf(a.y, b.y, delta);
      }
    } else {
#pragma unroll 8
      for (int d = 0; d < DV; ++d)
        delta = fmaf(loadf<T>(p.o_in, orow + d), loadf<T>(p.dout, drow + d), delta);
    }
    p.bwd_delta[(long long)bh * p.N + n] = delta;
    lseS[r] = lse;
    cS[r] = delta - dl;
  }
}

/// One warp per member of a chunk whose dL/dr rows are in bwd_dr (and
/// visible to the block): adds the exact near field of cluster i and writes
/// dq (stored; causal levels add scale * dL/dx onto it).
template <class Cfg>
__device__ void rowsFinish(const MuseParams &p, const HeadIndex &hi, int bh, int i, const int *members, int mn,
                           const float *lseS, const float *cS) {
  constexpr int D = Cfg::D, DV = Cfg::DV;
  using T = typename Cfg::T;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const bool causal = p.seg_count > 0;
  for (int r = warp; r < mn; r += kBwdWarps) {
    const int n = members[r];
    Lanes<D> dx, drn;
    dx.zero();
    if constexpr (Cfg::NEAR > 0) {
      Lanes<D> x;
      Lanes<DV> dO;
      loadScaledQuery<Cfg>(p, hi, n, lane, x);
      dO.template loadT<T>(p.dout, doRow(p, hi.b, hi.h, n), lane);
      rowNearField<Cfg>(p, hi, bh, i, x, dO, lseS[r], cS[r], 0.f, dx, lane); // cS = delta - dlse
    }
    drn.loadF(p.bwd_dr + ((long long)bh * p.N + n) * D, lane);
#pragma unroll
    for (int a = 0; a < Lanes<D>::K; ++a)
      dx.x[a] += drn.x[a];
    float *dqn = p.dq + dqRow(p, hi.b, hi.h, n);
    if (causal) { // dq holds the window's and the lower levels' parts
      Lanes<D> old;
      old.loadF(dqn, lane);
      old.axpy(p.scale, dx);
      old.store(dqn, lane);
    } else {
      dx.store(dqn, lane);
    }
  }
}

/// (P_nj, g_nj) = 0 for the chunk's members where key cluster j has no far
/// term (empty, or a near pair).
template <class Cfg>
__device__ __forceinline__ void rowsClearPair(const MuseParams &p, int bh, const int *members, int mn, int j) {
  for (int r = threadIdx.x; r < mn; r += kBwdThreads) {
    float *pg = p.bwd_pg + ((long long)bh * p.N + members[r]) * 2 * Cfg::CK + 2 * j;
    pg[0] = pg[1] = 0.f;
  }
}

/// Order 0: block (i, bh) takes the members of query cluster i (q_perm
/// order; causal levels: the served queries) in chunks of QT and, per tile of
/// JT key clusters, forms S = R KB^T and U = dO VB^T (R: the members'
/// residuals, KB, VB: the pairs' kbar, vbar), P = e^{lnm + S - lse},
/// g = P (U - delta + dlse), stores (P, g) to bwd_pg and accumulates
/// dL/dr = g KB in registers; then one warp per member adds the exact near
/// field and writes dq, bwd_dr and delta as rowsWarp does. QT (<=
/// RowTiles::QT) is the chunk the caller picked for the cluster's size (small
/// clusters of short causal segments take small tiles); `smem` holds
/// RowTiles::floats(QT) floats.
template <class Cfg, int QT> __device__ void rowsTiled(const MuseParams &p, float *smem) {
  using Tl = RowTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  constexpr int JT = Tl::JT, DP = Tl::DP, VP = Tl::VP, JP = Tl::JP;
  using T = typename Cfg::T;
  float *Rs = smem, *dOs = Rs + QT * DP, *Gs = dOs + QT * VP, *lseS = Gs + QT * JP;
  float *cS = lseS + QT, *KBs = cS + QT, *VBs = KBs + JT * DP, *lnmS = VBs + JT * VP;
  float *cen = lnmS + JT;

  const int tid = threadIdx.x;
  const int i = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
  const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
  const float *sum_i = p.summaries + ((long long)bh * CQ + i) * CK * F;
  for (int d = tid; d < D; d += kBwdThreads)
    cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];
  const MicroTile<QT, JT, kBwdThreads> mS(tid);
  const MicroTile<QT, D, kBwdThreads> mR(tid);

  for (int m0 = 0; m0 < qcount; m0 += QT) {
    const int mn = cmin(QT, qcount - m0);
    __syncthreads(); // cen is written; the previous chunk is no longer read
    for (int e = tid; e < QT * D; e += kBwdThreads) {
      const int r = e / D, d = e - r * D;
      Rs[r * DP + d] =
          r < mn ? scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, qperm[m0 + r]) + d)) - cen[d] : 0.f;
    }
    for (int e = tid; e < QT * DV; e += kBwdThreads) {
      const int r = e / DV, d = e - r * DV;
      dOs[r * VP + d] = r < mn ? loadf<T>(p.dout, doRow(p, hi.b, hi.h, qperm[m0 + r]) + d) : 0.f;
    }
    rowsMemberStats<Cfg>(p, hi, bh, qperm + m0, mn, lseS, cS);
    float dr[decltype(mR)::TM][decltype(mR)::TN] = {};
    for (int j0 = 0; j0 < CK; j0 += JT) {
      const int jn = cmin(JT, CK - j0);
      __syncthreads(); // the previous tile's KB and G are no longer read
      for (int e = tid; e < JT * D; e += kBwdThreads) {
        const int jj = e / D, d = e - jj * D;
        KBs[jj * DP + d] = jj < jn ? sum_i[(long long)(j0 + jj) * F + 1 + d] : 0.f;
      }
      for (int e = tid; e < JT * DV; e += kBwdThreads) {
        const int jj = e / DV, d = e - jj * DV;
        VBs[jj * VP + d] = jj < jn ? sum_i[(long long)(j0 + jj) * F + 1 + D + d] : 0.f;
      }
      for (int jj = tid; jj < JT; jj += kBwdThreads) {
        // -inf: no far term (empty key cluster, past CK or a near pair).
        const int j = j0 + jj;
        lnmS[jj] = jj < jn && !isNearPair<Cfg>(p, bh, i, j) ? sum_i[(long long)j * F] : -kInf();
      }
      __syncthreads();
      float s[decltype(mS)::TM][decltype(mS)::TN] = {};
      float u[decltype(mS)::TM][decltype(mS)::TN] = {};
      gemmAccumulate<DP, 1, 1, DP>(mS, s, Rs, KBs, D);
      gemmAccumulate<VP, 1, 1, VP>(mS, u, dOs, VBs, DV);
#pragma unroll
      for (int a = 0; a < decltype(mS)::TM; ++a)
#pragma unroll
        for (int c = 0; c < decltype(mS)::TN; ++c) {
          if (!mS.valid(a, c))
            continue;
          const int r = mS.row(a), jj = mS.col(c);
          const float lnm = lnmS[jj];
          const float P = r < mn && lnm != -kInf() ? expf(lnm + s[a][c] - lseS[r]) : 0.f;
          const float g = r < mn ? P * (u[a][c] - cS[r]) : 0.f; // cS past mn is stale
          Gs[r * JP + jj] = g;
          if (r < mn && jj < jn) {
            float *pg = p.bwd_pg + ((long long)bh * p.N + qperm[m0 + r]) * 2 * CK + 2 * (j0 + jj);
            pg[0] = P;
            pg[1] = g;
          }
        }
      __syncthreads();
      gemmAccumulate<JP, 1, DP, 1>(mR, dr, Gs, KBs, jn);
    }
    // dL/dr of the chunk to bwd_dr, then one warp per member finishes its row.
#pragma unroll
    for (int a = 0; a < decltype(mR)::TM; ++a) {
      const int r = mR.row(a);
      if (r >= mn)
        continue;
      float *row = p.bwd_dr + ((long long)bh * p.N + qperm[m0 + r]) * D;
#pragma unroll
      for (int c = 0; c < decltype(mR)::TN; ++c)
        if (mR.valid(a, c))
          row[mR.col(c)] = dr[a][c];
    }
    __syncthreads(); // bwd_dr rows of the chunk are written and visible to the block
    rowsFinish<Cfg>(p, hi, bh, i, qperm + m0, mn, lseS, cS);
  }
}

/// Tiles of the order-1 rows (fp32 products of shared-memory tiles, every
/// input type): chunks of QT members of cluster i meet one far key cluster j
/// at a time; Sigma_ij is formed DVT value rows a pass from tiles of BK keys
/// (dipole.cuh sigmaPassExact) and kept in shared memory while it is applied.
template <class Cfg> struct RowDipoleTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV;
  static constexpr int QT = D + DV <= 128 ? 32 : 16, BK = 16;
  static constexpr int DVT = cmin(DV, floorPow2(4096 / D)); // Sigma rows a pass: 16 KB
  static constexpr int DP = D + 1, VP = DV + 1, TP = DVT + 1;
  static constexpr int KEYS = BK * DP + BK * DVT + BK; // ks, vs, wk of sigmaPassExact
  static constexpr int floats = QT * DP + QT * VP + 6 * QT + 2 * D + DV + DVT * DP + cmax(KEYS, QT * TP);
  static_assert(4 * floats <= kSharedBudget, "order-1 row tiles exceed 48 KB of shared memory");
};

/// Order 1: block (i, bh) takes the members of query cluster i (q_perm
/// order; causal levels: the served queries) in chunks of QT. Per far key
/// cluster j, Sigma_ij is formed in passes of DVT value rows and applied to
/// the chunk in shared memory:
///   Y = R Sigma^T           t_n = dO_n . Y_n = dO_n . Sigma_ij r_n
///   Z = dO Sigma            (Sigma_ij^T dO_n, summed over the passes)
/// then one warp per member: P_nj = e^{lnmass + r_n . kbar - lse_n},
/// g_nj = P_nj (dO_n . vbar + t_n - delta_n + dlse_n) to bwd_pg, and
/// dL/dr_n += P_nj Z_n + g_nj kbar in registers. Each Sigma_ij is formed once
/// a chunk, not once a query: (|j| + 2 QT) D Dv multiply-adds a pair and
/// chunk instead of 2 |i| |j| (D + Dv). Finishes like rowsTiled (near field,
/// dq, bwd_dr, delta).
template <class Cfg, int QT> __device__ void rowsDipole(const MuseParams &p, float *smem) {
  using Tl = RowDipoleTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  constexpr int BK = Tl::BK, DVT = Tl::DVT, DP = Tl::DP, VP = Tl::VP, TP = Tl::TP;
  static_assert(DV % DVT == 0, "value-row passes must divide the value dim");
  using T = typename Cfg::T;
  float *Rs = smem, *dOs = Rs + QT * DP, *lseS = dOs + QT * VP, *cS = lseS + QT, *tS = cS + QT;
  float *Ps = tS + QT, *gS = Ps + QT, *cen = gS + 2 * QT, *kb = cen + D, *vb = kb + D, *sig = vb + DV;
  float *keys = sig + DVT * DP, *Ys = keys; // the key tiles while Sigma forms, then Y
  float *ks = keys, *vs = ks + BK * DP, *wk = vs + BK * DVT;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int i = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
  const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
  const float *sum_i = p.summaries + ((long long)bh * CQ + i) * CK * F;
  const int *koff = p.k_offsets + (long long)hi.kh * (CK + 1);
  const int *kperm = p.k_perm + (long long)hi.kh * p.M;
  for (int d = tid; d < D; d += kBwdThreads)
    cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];
  const MicroTile<DVT, D, kBwdThreads> mS(tid);
  const MicroTile<QT, DVT, kBwdThreads> mY(tid);
  const MicroTile<QT, D, kBwdThreads> mR(tid);

  for (int m0 = 0; m0 < qcount; m0 += QT) {
    const int mn = cmin(QT, qcount - m0);
    __syncthreads(); // cen is written; the previous chunk is no longer read
    for (int e = tid; e < QT * D; e += kBwdThreads) {
      const int r = e / D, d = e - r * D;
      Rs[r * DP + d] =
          r < mn ? scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, qperm[m0 + r]) + d)) - cen[d] : 0.f;
    }
    for (int e = tid; e < QT * DV; e += kBwdThreads) {
      const int r = e / DV, d = e - r * DV;
      dOs[r * VP + d] = r < mn ? loadf<T>(p.dout, doRow(p, hi.b, hi.h, qperm[m0 + r]) + d) : 0.f;
    }
    rowsMemberStats<Cfg>(p, hi, bh, qperm + m0, mn, lseS, cS);
    float dr[decltype(mR)::TM][decltype(mR)::TN] = {};
    for (int j = 0; j < CK; ++j) {
      const float lnm = sum_i[(long long)j * F];
      if (lnm == -kInf() || isNearPair<Cfg>(p, bh, i, j)) { // uniform over the block
        rowsClearPair<Cfg>(p, bh, qperm + m0, mn, j);
        continue;
      }
      __syncthreads(); // the previous pair is done with kb, vb, tS, Ps, gS
      for (int d = tid; d < D; d += kBwdThreads)
        kb[d] = sum_i[(long long)j * F + 1 + d];
      for (int a = tid; a < DV; a += kBwdThreads)
        vb[a] = sum_i[(long long)j * F + 1 + D + a];
      for (int r = tid; r < QT; r += kBwdThreads)
        tS[r] = 0.f;
      float z[decltype(mR)::TM][decltype(mR)::TN] = {};
      for (int a0 = 0; a0 < DV; a0 += DVT) {
        float sg[decltype(mS)::TM][decltype(mS)::TN] = {};
        sigmaPassExact<Cfg, DVT, BK, kBwdThreads>(p, hi.kh, kperm + koff[j], koff[j + 1] - koff[j], a0, lnm,
                                                   cen, kb, vb + a0, ks, vs, wk, mS, sg);
        __syncthreads(); // the key tiles are no longer read (Ys reuses them); sig is free
#pragma unroll
        for (int r = 0; r < decltype(mS)::TM; ++r)
#pragma unroll
          for (int c = 0; c < decltype(mS)::TN; ++c)
            if (mS.valid(r, c))
              sig[mS.row(r) * DP + mS.col(c)] = sg[r][c];
        __syncthreads();
        float y[decltype(mY)::TM][decltype(mY)::TN] = {};
        gemmAccumulate<DP, 1, 1, DP>(mY, y, Rs, sig, D); // Y(n, a) = r_n . Sigma[a]
#pragma unroll
        for (int r = 0; r < decltype(mY)::TM; ++r)
#pragma unroll
          for (int c = 0; c < decltype(mY)::TN; ++c)
            if (mY.valid(r, c))
              Ys[mY.row(r) * TP + mY.col(c)] = y[r][c];
        gemmAccumulate<VP, 1, DP, 1>(mR, z, dOs + a0, sig, DVT); // Z(n, d) += dO_n[a] Sigma[a][d]
        __syncthreads();
        for (int r = warp; r < mn; r += kBwdWarps) {
          float part = 0.f;
          for (int a = lane; a < DVT; a += 32)
            part = fmaf(dOs[r * VP + a0 + a], Ys[r * TP + a], part);
          part = warpSum(part);
          if (lane == 0)
            tS[r] += part;
        }
        // The next pass's first barrier (in sigmaPassExact) precedes any write to Ys.
      }
      __syncthreads(); // tS is complete
      for (int r = warp; r < QT; r += kBwdWarps) {
        float s = 0.f, u = 0.f;
        for (int d = lane; d < D; d += 32)
          s = fmaf(Rs[r * DP + d], kb[d], s);
        for (int a = lane; a < DV; a += 32)
          u = fmaf(dOs[r * VP + a], vb[a], u);
        s = warpSum(s);
        u = warpSum(u);
        const float P = r < mn ? expf(lnm + s - lseS[r]) : 0.f;
        const float g = r < mn ? P * (u + tS[r] - cS[r]) : 0.f; // cS past mn is stale
        if (lane == 0) {
          Ps[r] = P;
          gS[r] = g;
          if (r < mn) {
            float *pg = p.bwd_pg + ((long long)bh * p.N + qperm[m0 + r]) * 2 * CK + 2 * j;
            pg[0] = P;
            pg[1] = g;
          }
        }
      }
      __syncthreads(); // Ps, gS
#pragma unroll
      for (int r = 0; r < decltype(mR)::TM; ++r)
#pragma unroll
        for (int c = 0; c < decltype(mR)::TN; ++c) {
          const int row = mR.valid(r, c) ? mR.row(r) : 0, col = mR.valid(r, c) ? mR.col(c) : 0;
          dr[r][c] = fmaf(Ps[row], z[r][c], fmaf(gS[row], kb[col], dr[r][c]));
        }
    }
    // dL/dr of the chunk to bwd_dr, then one warp per member finishes its row.
#pragma unroll
    for (int a = 0; a < decltype(mR)::TM; ++a) {
      const int r = mR.row(a);
      if (r >= mn)
        continue;
      float *row = p.bwd_dr + ((long long)bh * p.N + qperm[m0 + r]) * D;
#pragma unroll
      for (int c = 0; c < decltype(mR)::TN; ++c)
        if (mR.valid(a, c))
          row[mR.col(c)] = dr[a][c];
    }
    __syncthreads(); // bwd_dr rows of the chunk are written and visible to the block
    rowsFinish<Cfg>(p, hi, bh, i, qperm + m0, mn, lseS, cS);
  }
}

/// Tiles of the order-1 rows on the tensor cores (16-bit inputs, D + Dv <=
/// 128): rowsDipole's schedule with Sigma_ij, R Sigma^T and dO Sigma as
/// mma.sync products of T tiles (fp32 accumulators).
template <class Cfg> struct RowDipoleMmaTiles {
  using T = typename Cfg::T;
  static constexpr int D = Cfg::D, DV = Cfg::DV, QT = 32, LK = 32;
  static constexpr int LDK = D + 8, LDV = DV + 8; // padded rows: conflict-free ldmatrix
  static constexpr int KEYS = 2 * (LK * LDK + LK * LDV) + 4 * LK; // kc, w vc (T), w
  static constexpr int OUT = 4 * (QT * (DV + 1) + QT * (D + 1));  // Y, Z (fp32)
  static constexpr int bytes = 2 * (QT * LDK + QT * LDV + DV * LDK) + cmax(KEYS, OUT) +
                               4 * (QT * (D + 1) + 5 * QT + 2 * D + DV);
  static constexpr bool usable = TensorCoreType<T>::value && D % 16 == 0 && DV % 16 == 0 && D + DV <= 128 &&
                                 bytes <= kSharedBudget;
};

/// rowsDipole on the tensor cores. Per chunk of QT members and far key
/// cluster j: Sigma_ij from tiles of LK keys, centred on kbar_ij, vbar_ij and
/// weighted in fp32, rounded to T (kc, w vc), accumulated in registers over
/// the tiles and rounded to T once; Y = R Sigma^T and Z = dO Sigma (R: the
/// residuals rounded to T, as the forward's dipole rounds them) into fp32
/// shared memory; the per-member epilogue is rowsDipole's (P from the fp32
/// residuals).
template <class Cfg> __device__ void rowsDipoleMma(const MuseParams &p) {
  using Tl = RowDipoleMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  constexpr int QT = Tl::QT, LK = Tl::LK, LDK = Tl::LDK, LDV = Tl::LDV, DP = D + 1, VP = DV + 1;
  using MbS = MmaBlocks<DV, D, kBwdWarps>;
  using MbY = MmaBlocks<QT, DV, kBwdWarps>;
  using MbZ = MmaBlocks<QT, D, kBwdWarps>;
  __shared__ __align__(16) unsigned char raw[Tl::bytes];
  T *Rh = reinterpret_cast<T *>(raw), *dOh = Rh + QT * LDK, *Sh = dOh + QT * LDV;
  unsigned char *uni = reinterpret_cast<unsigned char *>(Sh + DV * LDK);
  T *KCh = reinterpret_cast<T *>(uni), *WVh = KCh + LK * LDK;
  float *wk = reinterpret_cast<float *>(WVh + LK * LDV);
  float *Ys = reinterpret_cast<float *>(uni), *Zs = Ys + QT * VP;
  float *Rs = reinterpret_cast<float *>(uni + cmax(Tl::KEYS, Tl::OUT));
  float *lseS = Rs + QT * DP, *cS = lseS + QT, *tS = cS + QT, *Ps = tS + QT, *gS = Ps + QT;
  float *cen = gS + QT, *kb = cen + D, *vb = kb + D;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int i = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
  const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
  const float *sum_i = p.summaries + ((long long)bh * CQ + i) * CK * F;
  const int *koff = p.k_offsets + (long long)hi.kh * (CK + 1);
  const int *kperm = p.k_perm + (long long)hi.kh * p.M;
  for (int d = tid; d < D; d += kBwdThreads)
    cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];
  const MicroTile<QT, D, kBwdThreads> mR(tid);

  for (int m0 = 0; m0 < qcount; m0 += QT) {
    const int mn = cmin(QT, qcount - m0);
    __syncthreads(); // cen is written; the previous chunk is no longer read
    for (int e = tid; e < QT * (D + DV) / 8; e += kBwdThreads) { // 8-element row segments
      const int r = e / ((D + DV) / 8), sg = 8 * (e - r * ((D + DV) / 8));
      float x[8] = {};
      if (r < mn) {
        const int n = qperm[m0 + r];
        if (sg < D) {
          load8<T>(p.q, qRow(p, hi.b, hi.h, n) + sg, x);
#pragma unroll
          for (int c = 0; c < 8; ++c)
            x[c] = scaled(p, x[c]) - cen[sg + c];
        } else {
          load8<T>(p.dout, doRow(p, hi.b, hi.h, n) + sg - D, x);
        }
      }
      if (sg < D)
#pragma unroll
        for (int c = 0; c < 8; ++c)
          Rs[r * DP + sg + c] = x[c];
      store8<T>(sg < D ? &Rh[r * LDK + sg] : &dOh[r * LDV + sg - D], x);
    }
    rowsMemberStats<Cfg>(p, hi, bh, qperm + m0, mn, lseS, cS);
    float dr[decltype(mR)::TM][decltype(mR)::TN] = {};
    for (int j = 0; j < CK; ++j) {
      const float lnm = sum_i[(long long)j * F];
      if (lnm == -kInf() || isNearPair<Cfg>(p, bh, i, j)) { // uniform over the block
        rowsClearPair<Cfg>(p, bh, qperm + m0, mn, j);
        continue;
      }
      __syncthreads(); // the previous pair is done with kb, vb, tS, Ps, gS, Sh, Ys, Zs
      for (int d = tid; d < D; d += kBwdThreads)
        kb[d] = sum_i[(long long)j * F + 1 + d];
      for (int a = tid; a < DV; a += kBwdThreads)
        vb[a] = sum_i[(long long)j * F + 1 + D + a];
      // Sigma_ij = sum_l (w_l / Z)(v_l - vbar)(k_l - kbar)^T over tiles of LK keys.
      float S[MbS::NB][2][4] = {};
      const int kstart = koff[j], kcount = koff[j + 1] - kstart;
      for (int l0 = 0; l0 < kcount; l0 += LK) {
        const int tk = cmin(LK, kcount - l0);
        __syncthreads(); // kb, vb written; the previous key tile is no longer read
        for (int e = tid; e < LK * (D + DV) / 8; e += kBwdThreads) { // 8-element row segments
          const int l = e / ((D + DV) / 8), sg = 8 * (e - l * ((D + DV) / 8));
          float x[8] = {};
          if (l < tk) {
            const int m = kperm[kstart + l0 + l];
            load8<T>(sg < D ? p.k : p.v, sg < D ? kRow(p, hi.kh, m) + sg : vRow(p, hi.kh, m) + sg - D, x);
          }
          store8<T>(sg < D ? &KCh[l * LDK + sg] : &WVh[l * LDV + sg - D], x);
        }
        __syncthreads();
        for (int l = warp; l < LK; l += kBwdWarps) {
          float s = 0.f;
          for (int d = lane; d < D; d += 32)
            s = fmaf(cen[d], toFloat(KCh[l * LDK + d]), s);
          s = warpSum(s);
          if (lane == 0)
            wk[l] = l < tk ? expf(s - lnm) : 0.f;
        }
        __syncthreads();
        for (int e = tid; e < LK * (D + DV) / 8; e += kBwdThreads) { // centre (and weight) in place
          const int l = e / ((D + DV) / 8), sg = 8 * (e - l * ((D + DV) / 8));
          T *row = sg < D ? &KCh[l * LDK + sg] : &WVh[l * LDV + sg - D];
          float x[8];
          load8<T>(row, 0, x);
          const float w = sg < D ? (l < tk ? 1.f : 0.f) : wk[l];
          const float *mean = sg < D ? kb + sg : vb + sg - D;
#pragma unroll
          for (int c = 0; c < 8; ++c)
            x[c] = w * (x[c] - mean[c]);
          store8<T>(row, x);
        }
        __syncthreads();
        mmaAccumulate<MbS, T>(
            S, (tk + 15) / 16 * 16,
            [&](unsigned(&af)[4], int r0, int kk) { loadATrans<LDV>(af, WVh, r0, kk, lane); },
            [&](unsigned(&bb)[4], int kk, int n0) { loadBTrans<LDK>(bb, KCh, kk, n0, lane); });
      }
      mmaForEach<MbS>(S, [&](int a, int d, float v0, float v1) {
        *reinterpret_cast<unsigned *>(&Sh[a * LDK + d]) = pack2<T>(v0, v1);
      });
      __syncthreads(); // Sh; the key tiles are no longer read (Ys, Zs reuse them)
      {
        float y[MbY::NB][2][4] = {};
        mmaAccumulate<MbY, T>(
            y, D, [&](unsigned(&af)[4], int r0, int kk) { loadA<LDK, T>(af, Rh, r0, kk, lane); },
            [&](unsigned(&bb)[4], int kk, int n0) { loadBRows<LDK>(bb, Sh, kk, n0, lane); });
        mmaForEach<MbY>(y, [&](int r, int a, float v0, float v1) {
          Ys[r * VP + a] = v0;
          Ys[r * VP + a + 1] = v1;
        });
        float z[MbZ::NB][2][4] = {};
        mmaAccumulate<MbZ, T>(
            z, DV, [&](unsigned(&af)[4], int r0, int kk) { loadA<LDV, T>(af, dOh, r0, kk, lane); },
            [&](unsigned(&bb)[4], int kk, int n0) { loadBTrans<LDK>(bb, Sh, kk, n0, lane); });
        mmaForEach<MbZ>(z, [&](int r, int d, float v0, float v1) {
          Zs[r * DP + d] = v0;
          Zs[r * DP + d + 1] = v1;
        });
      }
      __syncthreads(); // Ys, Zs
      for (int r = warp; r < QT; r += kBwdWarps) {
        float s = 0.f, u = 0.f;
        for (int d = lane; d < D; d += 32)
          s = fmaf(Rs[r * DP + d], kb[d], s);
        for (int a = lane; a < DV; a += 32) {
          const float o = toFloat(dOh[r * LDV + a]);
          u = fmaf(o, vb[a] + Ys[r * VP + a], u);
        }
        s = warpSum(s);
        u = warpSum(u);
        const float P = r < mn ? expf(lnm + s - lseS[r]) : 0.f;
        const float g = r < mn ? P * (u - cS[r]) : 0.f; // cS past mn is stale
        if (lane == 0) {
          Ps[r] = P;
          gS[r] = g;
          if (r < mn) {
            float *pg = p.bwd_pg + ((long long)bh * p.N + qperm[m0 + r]) * 2 * CK + 2 * j;
            pg[0] = P;
            pg[1] = g;
          }
        }
      }
      __syncthreads(); // Ps, gS
#pragma unroll
      for (int r = 0; r < decltype(mR)::TM; ++r)
#pragma unroll
        for (int c = 0; c < decltype(mR)::TN; ++c) {
          const int row = mR.valid(r, c) ? mR.row(r) : 0, col = mR.valid(r, c) ? mR.col(c) : 0;
          dr[r][c] = fmaf(Ps[row], Zs[row * DP + col], fmaf(gS[row], kb[col], dr[r][c]));
        }
    }
    // dL/dr of the chunk to bwd_dr, then one warp per member finishes its row.
#pragma unroll
    for (int a = 0; a < decltype(mR)::TM; ++a) {
      const int r = mR.row(a);
      if (r >= mn)
        continue;
      float *row = p.bwd_dr + ((long long)bh * p.N + qperm[m0 + r]) * D;
#pragma unroll
      for (int c = 0; c < decltype(mR)::TN; ++c)
        if (mR.valid(a, c))
          row[mR.col(c)] = dr[a][c];
    }
    __syncthreads(); // bwd_dr rows of the chunk are written and visible to the block
    rowsFinish<Cfg>(p, hi, bh, i, qperm + m0, mn, lseS, cS);
  }
}

/// Tiles of the order-0 rows on the tensor cores: chunks of QT members (a
/// warp per 16) meet JT key clusters at a time.
template <class Cfg> struct RowMmaTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV;
  static constexpr int QT = 16 * kBwdWarps, JT = 16;
  static constexpr int KLD = D + 8, VLD = DV + 8; // padded: 16-byte rows, no bank conflicts
  static constexpr bool usable = TensorCoreType<typename Cfg::T>::value && D % 16 == 0 && DV % 16 == 0 &&
                                 D + DV <= 128;
  // rHi, rLo, dOs; the tile's kbar, vbar as hi + lo; lse, c, lnm, the centroid;
  // with the pair sums fused (rowsTiledMma<Cfg, true>): G and P of the chunk
  // as hi + lo (unpadded, swizzled) and the warps' parts of gL.
  static constexpr int bytes = 2 * QT * (2 * KLD + VLD) + 2 * JT * (2 * KLD + 2 * VLD) + 8 * QT + 4 * JT + 4 * D;
  static constexpr int fusedBytes = bytes + 2 * 4 * QT * JT + 4 * (2 * kBwdWarps + 1) * JT;
  static_assert(!usable || fusedBytes <= kSharedBudget, "row tiles exceed 48 KB of shared memory");
};

/// Element offset of (member m, cluster c) in a QT x 16 tile of T without
/// padding: rows of 32 bytes whose two 16-byte halves swap on every other
/// group of four rows, so that the 8 rows an ldmatrix reads, and the fragment
/// stores of a warp, fall in distinct banks.
__device__ __forceinline__ int pairTileAt(int m, int c) { return m * 16 + ((c & 8) ^ (((m >> 2) & 1) << 3)) + (c & 7); }

/// A = Wᵀ (16 clusters x members k0..k0+15) from such a tile (ldmatrix.trans).
template <class T> __device__ __forceinline__ void loadPairTileATrans(unsigned (&a)[4], const T *tile, int k0, int lane) {
  const int row = k0 + (lane & 7) + (lane >> 4) * 8, col = ((lane >> 3) & 1) * 8;
  ldsmX4Trans(a, tile + pairTileAt(row, col));
}

/// Two consecutive fp32 values into the T pairs hi (rounded) and lo (what
/// rounding lost) of two tiles.
template <class T> __device__ __forceinline__ void storeSplit(T *hi, T *lo, float a, float b) {
  unsigned h, l;
  split2<T>(a, b, h, l);
  *reinterpret_cast<unsigned *>(hi) = h;
  *reinterpret_cast<unsigned *>(lo) = l;
}

/// The fused pair sums of one chunk and tile of key clusters j0 .. j0+jn-1
/// (rowsTiledMma<Cfg, true>): warp w forms the 16-column units w, w +
/// kBwdWarps, .. of (gK | gV) = (Gᵀ R | Pᵀ dO) over the chunk's mn members,
/// G and P from the pair tiles (hi + lo), R (hi + lo) and dO (exact) from the
/// chunk's tiles, and stores them into the pairs' rows (`first` chunk) or
/// adds them to what the earlier chunks stored (same thread, same element);
/// lanes 0..15 of warp 0 do the same for gL from the warps' parts. On the
/// `last` chunk the complete sums also give off_ij = gL - (gK.kbar + gV.vbar)
/// (0 where the pair has no stage-1 term), written into the first slot as
/// backward_pairs does: each thread's share of the dot, the quad's sum, the
/// warps' parts added in warp order. Every load of a unit (earlier sums,
/// kbar / vbar) is issued before its products, so their latency overlaps them.
template <class Cfg, int UPW, class T>
__device__ __forceinline__ void rowsPairSums(float *pairs, const float *sum_i, bool first, bool last, int mn,
                                             int j0, int jn, const T *rHi, const T *rLo, const T *dOs,
                                             const T *gHi, const T *gLo, const T *pHi, const T *pLo,
                                             const float (*glS)[16], const float *lnmS, float (*offS)[16],
                                             float *glTot) {
  using Tl = RowMmaTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, F = 1 + D + DV, KLD = Tl::KLD, VLD = Tl::VLD;
  constexpr int UNITS = (D + DV) / 16;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int ks = cdiv(mn, 16); // 16-member steps holding members (rows past mn are zero)
  float part[2] = {0.f, 0.f};   // off's dot for rows g, g + 8 of the tile (this thread's columns)
#pragma unroll
  for (int uu = 0; uu < UPW; ++uu) {
    const int unit = warp + uu * kBwdWarps;
    if (unit >= UNITS)
      break; // uniform over the warp
    const bool isK = unit < D / 16;
    const int c0 = isK ? 16 * unit : 16 * unit - D; // column of R or of dO
    const int col0 = 1 + (isK ? 0 : D) + c0 + 2 * t; // slot in a pair's row (and in a summaries row)
    float old[2][4], kv[2][4];
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int jj = g + 8 * (c >> 1);
        const long long at = (long long)(j0 + jj) * F + col0 + 8 * n + (c & 1);
        old[n][c] = !first && jj < jn ? pairs[at] : 0.f;
        kv[n][c] = last && jj < jn ? sum_i[at] : 0.f; // kbar_ij or vbar_ij, fp32
      }
    float acc[2][4] = {};
    for (int kk = 0; kk < ks; ++kk) {
      unsigned aH[4], aL[4], bH[4];
      loadPairTileATrans<T>(aH, isK ? gHi : pHi, 16 * kk, lane);
      loadPairTileATrans<T>(aL, isK ? gLo : pLo, 16 * kk, lane);
      if (isK) {
        unsigned bL[4];
        loadBTrans<KLD, T>(bH, rHi, 16 * kk, c0, lane);
        loadBTrans<KLD, T>(bL, rLo, 16 * kk, c0, lane);
        mmaTwoTiles<T>(acc, aH, bH);
        mmaTwoTiles<T>(acc, aH, bL);
      } else {
        loadBTrans<VLD, T>(bH, dOs, 16 * kk, c0, lane); // dO is exact in T: no lo part
        mmaTwoTiles<T>(acc, aH, bH);
      }
      mmaTwoTiles<T>(acc, aL, bH);
    }
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int jj = g + 8 * (c >> 1);
        const float v = old[n][c] + acc[n][c];
        if (jj < jn)
          pairs[(long long)(j0 + jj) * F + col0 + 8 * n + (c & 1)] = v;
        part[c >> 1] = fmaf(v, kv[n][c], part[c >> 1]);
      }
  }
  if (warp == 0 && lane < jn) {
    float v = glS[0][lane];
    for (int w = 1; w < ks; ++w) // the warps holding members, in order
      v += glS[w][lane];
    float *dst = pairs + (long long)(j0 + lane) * F;
    v = first ? v : *dst + v;
    if (last)
      glTot[lane] = v; // becomes off_ij below
    else
      *dst = v;
  }
  if (!last)
    return; // uniform over the block
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    part[h] += __shfl_xor_sync(0xffffffffu, part[h], 1);
    part[h] += __shfl_xor_sync(0xffffffffu, part[h], 2);
  }
  if (t == 0) {
    offS[warp][g] = part[0];
    offS[warp][g + 8] = part[1];
  }
  __syncthreads(); // every warp's part of the dot and gL are in shared memory
  if (tid < jn) {
    float dot = offS[0][tid];
#pragma unroll
    for (int w = 1; w < kBwdWarps; ++w)
      dot += offS[w][tid];
    // -inf: no stage-1 term (near pair or empty key cluster): off 0, as pairsStoreOff.
    pairs[(long long)(j0 + tid) * F] = lnmS[tid] == -kInf() ? 0.f : glTot[tid] - dot;
  }
}

/// rowsTiled on the tensor cores (16-bit inputs, D + Dv <= 128), the same
/// contract, or (kFusedPairs) with backward_pairs' contract too: the stage-1
/// pair sums of cluster i, gL_ij = sum_n g_nj, gK_ij = sum_n g_nj r_n,
/// gV_ij = sum_n P_nj dO_n, formed from the P and G this kernel has, into
/// bwd_pairs with off_ij in the first slot (as backward_pairs); no bwd_pg.
/// Per chunk and tile of JT key clusters, G and P go to shared memory as
/// hi + lo and rowsPairSums forms the tile's sums over the chunk's members.
/// The residuals R (fp32) and the pairs' kbar, vbar are staged as
/// hi + lo pairs of T, so S = R KBᵀ keeps about 16 significant bits (three
/// products: hi·hi + hi·lo + lo·hi); dO is exact in T, so U = dO VBᵀ (where
/// the difference U - delta is taken) takes two (dO·VB_hi + dO·VB_lo);
/// dL/dr += G KB likewise with G split in registers. Grid (CQ, B*H), block
/// kBwdThreads.
template <class Cfg, bool kFusedPairs> __device__ void rowsTiledMma(const MuseParams &p) {
  using Tl = RowMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  constexpr int QT = Tl::QT, JT = Tl::JT, KLD = Tl::KLD, VLD = Tl::VLD, NK = D / 8;
  static_assert(JT == 16, "the pair tiles are 16 clusters wide");
  __shared__ __align__(16) T rHi[QT * KLD], rLo[QT * KLD], dOs[QT * VLD];
  __shared__ __align__(16) T kbHi[JT * KLD], kbLo[JT * KLD], vbHi[JT * VLD], vbLo[JT * VLD];
  __shared__ float lseS[QT], cS[QT], lnmS[JT], cen[D];
  constexpr int PT = kFusedPairs ? QT * JT : 1; // the pair tiles (G, P as hi + lo)
  __shared__ __align__(16) T gHi[PT], gLo[PT], pHi[PT], pLo[PT];
  __shared__ float glS[kFusedPairs ? kBwdWarps : 1][JT], offS[kFusedPairs ? kBwdWarps : 1][JT];
  __shared__ float glTot[kFusedPairs ? JT : 1];
  // Units of 16 columns of (gK | gV) a warp: warp w takes units w, w + kBwdWarps, ...
  constexpr int UNITS = (D + DV) / 16, UPW = cdiv(UNITS, kBwdWarps);
  // Without a near field the epilogue writes dq from the dL/dr fragments.
  constexpr bool kDirectDq = Cfg::NEAR == 0;
  const bool causal = p.seg_count > 0;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3, ra = 16 * warp + g, rb = ra + 8;
  const int i = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
  const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
  const float *sum_i = p.summaries + ((long long)bh * CQ + i) * CK * F;
  float *pairs = p.bwd_pairs + ((long long)bh * CQ + i) * CK * F;
  for (int d = tid; d < D; d += kBwdThreads)
    cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];
  // Every chunk's tiles stage row i of the summaries (kbar, vbar, ln-mass)
  // after a barrier: fetched into L2 once here, those loads wait for L2.
  prefetchRowsL2(1, CK * F * 4, [&](int) { return sum_i; }, tid, kBwdThreads);
  if (kFusedPairs && qcount == 0) {
    // No members: every pair sum of i is zero (off_ij too), as backward_keys reads them.
    for (int e = tid; e < CK * F; e += kBwdThreads)
      pairs[e] = 0.f;
    return;
  }

  for (int m0 = 0; m0 < qcount; m0 += QT) {
    const int mn = cmin(QT, qcount - m0);
    if (kDirectDq && causal) // the chunk's dq rows, read back by the epilogue
      prefetchRowsL2(mn, D * 4, [&](int r) { return p.dq + dqRow(p, hi.b, hi.h, qperm[m0 + r]); }, tid, kBwdThreads);
    __syncthreads(); // cen is written; the previous chunk is no longer read
    {
      // The members' q and dO rows, EB pairs of each at a time: every load
      // of a batch before its first store.
      constexpr int EQ = QT * D / 2 / kBwdThreads, EO = QT * DV / 2 / kBwdThreads, EB = 8;
      static_assert(EQ * kBwdThreads == QT * D / 2 && EO * kBwdThreads == QT * DV / 2, "whole pairs a thread");
      static_assert(EQ % EB == 0 && EO % EB == 0, "whole batches");
      const T *qp = static_cast<const T *>(p.q), *dop = static_cast<const T *>(p.dout);
#pragma unroll 1
      for (int k0 = 0; k0 < cmax(EQ, EO); k0 += EB) {
        unsigned qv[EB], ov[EB];
#pragma unroll
        for (int k = 0; k < EB; ++k) {
          const int e = tid + (k0 + k) * kBwdThreads, r = e / (D / 2), d = 2 * (e - r * (D / 2));
          qv[k] = k0 < EQ && r < mn ? ldPair<T>(qp + qRow(p, hi.b, hi.h, qperm[m0 + r]) + d) : 0u;
        }
#pragma unroll
        for (int k = 0; k < EB; ++k) {
          const int e = tid + (k0 + k) * kBwdThreads, r = e / (DV / 2), d = 2 * (e - r * (DV / 2));
          ov[k] = k0 < EO && r < mn ? ldPair<T>(dop + doRow(p, hi.b, hi.h, qperm[m0 + r]) + d) : 0u;
        }
        if (k0 < EQ)
#pragma unroll
          for (int k = 0; k < EB; ++k) {
            const int e = tid + (k0 + k) * kBwdThreads, r = e / (D / 2), d = 2 * (e - r * (D / 2));
            const float2 x = unpack2<T>(qv[k]);
            const float a = r < mn ? scaled(p, x.x) - cen[d] : 0.f, b = r < mn ? scaled(p, x.y) - cen[d + 1] : 0.f;
            storeSplit<T>(rHi + r * KLD + d, rLo + r * KLD + d, a, b);
          }
        if (k0 < EO)
#pragma unroll
          for (int k = 0; k < EB; ++k) {
            const int e = tid + (k0 + k) * kBwdThreads, r = e / (DV / 2), d = 2 * (e - r * (DV / 2));
            *reinterpret_cast<unsigned *>(dOs + r * VLD + d) = ov[k];
          }
      }
    }
    rowsMemberStats<Cfg>(p, hi, bh, qperm + m0, mn, lseS, cS);
    float dr[NK][4];
    zeroFragments(dr);
    for (int j0 = 0; j0 < CK; j0 += JT) {
      const int jn = cmin(JT, CK - j0);
      __syncthreads(); // the previous tile's KB, VB are no longer read
      {
        // kbar, vbar of the tile: every load before the first store (rows of
        // F floats: unaligned, so pairs of scalar loads).
        constexpr int EK = JT * D / 2 / kBwdThreads, EV = JT * DV / 2 / kBwdThreads;
        static_assert(EK * kBwdThreads == JT * D / 2 && EV * kBwdThreads == JT * DV / 2, "whole pairs a thread");
        float2 kv[EK], vv[EV];
#pragma unroll
        for (int k = 0; k < EK; ++k) {
          const int e = tid + k * kBwdThreads, jj = e / (D / 2), d = 2 * (e - jj * (D / 2));
          const float *src = sum_i + (long long)(j0 + jj) * F + 1 + d;
          kv[k] = jj < jn ? make_float2(src[0], src[1]) : make_float2(0.f, 0.f);
        }
#pragma unroll
        for (int k = 0; k < EV; ++k) {
          const int e = tid + k * kBwdThreads, jj = e / (DV / 2), d = 2 * (e - jj * (DV / 2));
          const float *src = sum_i + (long long)(j0 + jj) * F + 1 + D + d;
          vv[k] = jj < jn ? make_float2(src[0], src[1]) : make_float2(0.f, 0.f);
        }
#pragma unroll
        for (int k = 0; k < EK; ++k) {
          const int e = tid + k * kBwdThreads, jj = e / (D / 2), d = 2 * (e - jj * (D / 2));
          storeSplit<T>(kbHi + jj * KLD + d, kbLo + jj * KLD + d, kv[k].x, kv[k].y);
        }
#pragma unroll
        for (int k = 0; k < EV; ++k) {
          const int e = tid + k * kBwdThreads, jj = e / (DV / 2), d = 2 * (e - jj * (DV / 2));
          storeSplit<T>(vbHi + jj * VLD + d, vbLo + jj * VLD + d, vv[k].x, vv[k].y);
        }
      }
      for (int jj = tid; jj < JT; jj += kBwdThreads) {
        // -inf: no far term (empty key cluster, past CK or a near pair).
        const int j = j0 + jj;
        lnmS[jj] = jj < jn && !isNearPair<Cfg>(p, bh, i, j) ? sum_i[(long long)j * F] : -kInf();
      }
      __syncthreads();
      if (16 * warp < mn) { // else all 16 rows of this warp are past the chunk's members (small clusters)
        float s[2][4] = {}, u[2][4] = {};
        bwdRowProducts<D, KLD, KLD, 1>(s, rHi, 16 * warp, kbHi, lane);
        bwdRowProducts<D, KLD, KLD, 1>(s, rHi, 16 * warp, kbLo, lane);
        bwdRowProducts<D, KLD, KLD, 1>(s, rLo, 16 * warp, kbHi, lane);
        bwdRowProducts<DV, VLD, VLD, 1>(u, dOs, 16 * warp, vbHi, lane);
        bwdRowProducts<DV, VLD, VLD, 1>(u, dOs, 16 * warp, vbLo, lane);
        float glo[2][4], gsum[2][2] = {};
#pragma unroll
        for (int n = 0; n < 2; ++n)
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int r = half ? rb : ra, jj = 8 * n + 2 * t;
            float pg[2];
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              const float lnm = lnmS[jj + c];
              const float P = r < mn && lnm != -kInf() ? expf(lnm + s[n][2 * half + c] - lseS[r]) : 0.f;
              const float G = r < mn ? P * (u[n][2 * half + c] - cS[r]) : 0.f;
              pg[c] = P;
              s[n][2 * half + c] = G;
            }
            if constexpr (kFusedPairs) {
              // G and P of rows ra, rb (zeros past the members) for the pair sums.
              storeSplit<T>(gHi + pairTileAt(r, jj), gLo + pairTileAt(r, jj), s[n][2 * half], s[n][2 * half + 1]);
              storeSplit<T>(pHi + pairTileAt(r, jj), pLo + pairTileAt(r, jj), pg[0], pg[1]);
              gsum[n][0] += s[n][2 * half];
              gsum[n][1] += s[n][2 * half + 1];
            } else if (r < mn) {
              float *dst = p.bwd_pg + ((long long)bh * p.N + qperm[m0 + r]) * 2 * CK + 2 * (j0 + jj);
              if (jj < jn)
                *reinterpret_cast<float2 *>(dst) = make_float2(pg[0], s[n][2 * half]);
              if (jj + 1 < jn)
                *reinterpret_cast<float2 *>(dst + 2) = make_float2(pg[1], s[n][2 * half + 1]);
            }
            const float2 h = unpack2<T>(pack2<T>(s[n][2 * half], s[n][2 * half + 1]));
            glo[n][2 * half] = s[n][2 * half] - h.x;
            glo[n][2 * half + 1] = s[n][2 * half + 1] - h.y;
          }
        bwdAccumulate<NK, KLD, 1>(dr, s, kbHi, lane);
        bwdAccumulate<NK, KLD, 1>(dr, s, kbLo, lane);
        bwdAccumulate<NK, KLD, 1>(dr, glo, kbHi, lane);
        if constexpr (kFusedPairs) {
          // This warp's part of gL: its 16 rows summed over the lanes g (a fixed butterfly).
#pragma unroll
          for (int n = 0; n < 2; ++n)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              float v = gsum[n][c];
              v += __shfl_xor_sync(0xffffffffu, v, 4);
              v += __shfl_xor_sync(0xffffffffu, v, 8);
              v += __shfl_xor_sync(0xffffffffu, v, 16);
              if (g == 0)
                glS[warp][8 * n + 2 * t + c] = v;
            }
        }
      }
      if constexpr (kFusedPairs) {
        __syncthreads(); // the chunk's G, P and gL parts are in shared memory
        rowsPairSums<Cfg, UPW>(pairs, sum_i, m0 == 0, m0 + QT >= qcount, mn, j0, jn, rHi, rLo, dOs, gHi, gLo,
                               pHi, pLo, glS, lnmS, offS, glTot);
      }
    }
    if constexpr (kDirectDq) {
      // No near field: dq is dL/dr itself (acausal, stored unscaled) or
      // dq += scale dL/dr (causal levels), written with bwd_dr from the
      // fragments, every old dq element loaded before the first store.
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = half ? rb : ra;
        if (r >= mn)
          continue;
        const long long n = qperm[m0 + r];
        float *row = p.bwd_dr + ((long long)bh * p.N + n) * D;
        float *dqn = p.dq + dqRow(p, hi.b, hi.h, n);
        float old[NK][2];
#pragma unroll
        for (int k = 0; k < NK; ++k) {
          old[k][0] = causal ? dqn[8 * k + 2 * t] : 0.f;
          old[k][1] = causal ? dqn[8 * k + 2 * t + 1] : 0.f;
        }
#pragma unroll
        for (int k = 0; k < NK; ++k) {
          const float a = dr[k][2 * half], b = dr[k][2 * half + 1];
          *reinterpret_cast<float2 *>(row + 8 * k + 2 * t) = make_float2(a, b);
          dqn[8 * k + 2 * t] = causal ? fmaf(p.scale, a, old[k][0]) : a;
          dqn[8 * k + 2 * t + 1] = causal ? fmaf(p.scale, b, old[k][1]) : b;
        }
      }
    } else {
      // dL/dr of the chunk to bwd_dr, then one warp per member finishes its row.
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = half ? rb : ra;
        if (r >= mn)
          continue;
        float *row = p.bwd_dr + ((long long)bh * p.N + qperm[m0 + r]) * D;
#pragma unroll
        for (int n = 0; n < NK; ++n)
          *reinterpret_cast<float2 *>(row + 8 * n + 2 * t) = make_float2(dr[n][2 * half], dr[n][2 * half + 1]);
      }
      __syncthreads(); // bwd_dr rows of the chunk are written and visible to the block
      rowsFinish<Cfg>(p, hi, bh, i, qperm + m0, mn, lseS, cS);
    }
  }
}

/// kFusedPairs: the order-0 tensor-core path also forms backward_pairs' sums
/// (the plan then launches no backward_pairs; Backward.cpp fusedPairs).
template <class Cfg, bool kFusedPairs = false> __device__ void backward_rows(const MuseParams &p) {
  static_assert(!kFusedPairs || (Cfg::ORDER == 0 && RowMmaTiles<Cfg>::usable),
                "fused pair sums need the order-0 tensor-core rows (16-bit, D, Dv multiples of 16, D + Dv <= 128)");
  if constexpr (Cfg::ORDER == 0 && RowMmaTiles<Cfg>::usable) {
    rowsTiledMma<Cfg, kFusedPairs>(p);
  } else if constexpr (Cfg::ORDER == 0) {
    using Tl = RowTiles<Cfg>;
    // One buffer for every tile size (static shared memory of separate
    // instantiations would add up).
    __shared__ float smem[Tl::floats(Tl::QT)];
    const int *qoff = p.q_offsets + (long long)blockIdx.y * (Cfg::CQ + 1);
    const int qcount = qoff[blockIdx.x + 1] - qoff[blockIdx.x];
    if (qcount <= 8)
      rowsTiled<Cfg, 8>(p, smem);
    else if (qcount <= 16 || Tl::QT == 16)
      rowsTiled<Cfg, 16>(p, smem);
    else
      rowsTiled<Cfg, Tl::QT>(p, smem);
  } else if constexpr (RowDipoleMmaTiles<Cfg>::usable) {
    rowsDipoleMma<Cfg>(p);
  } else {
    using Tl = RowDipoleTiles<Cfg>;
    __shared__ float smem[Tl::floats];
    const int *qoff = p.q_offsets + (long long)blockIdx.y * (Cfg::CQ + 1);
    const int qcount = qoff[blockIdx.x + 1] - qoff[blockIdx.x];
    if (qcount <= 16 || Tl::QT == 16)
      rowsDipole<Cfg, 16>(p, smem);
    else
      rowsDipole<Cfg, Tl::QT>(p, smem);
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_ROWS_CUH
