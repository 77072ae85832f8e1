//===- dipole.cuh - Order-1 correction: the value-key covariance ----------===//
//
// Block (i, bh), after far_field. For every far key cluster j of query
// cluster i (non-empty, not near), with w_il / Z_ij = e^{qbar_i . k_l - lnmass_ij}:
//   Sigma_ij = sum_{l in j} (w_il / Z_ij) (v_l - vbar_ij)(k_l - kbar_ij)^T   (Dv x D)
//   o_n     += e^{s_nj - lse_n} Sigma_ij r_n            for every query n of i
// with s_nj = lnmass_ij + r_n . kbar_ij evaluated exactly as far_field does
// and lse_n from row_lse. Sigma_ij lives only in registers while it is formed
// and in shared memory while it is applied, DVT value rows at a time; every
// o_n is updated by one thread, once per value-row tile (no atomics).
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_DIPOLE_CUH
#define MUSE_TEMPLATES_DIPOLE_CUH

#include "muse/common.cuh"
#include "muse/online_softmax.cuh"
#include "muse/smem_gemm.cuh"

namespace muse {

template <class Cfg> struct DipoleTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV, THREADS = Cfg::THREADS;
  static constexpr int E1 = Cfg::NEAR > 0 ? Cfg::NEAR : 1;
  // Value rows of Sigma per pass: at most 32 registers of Sigma per thread.
  static constexpr int DVT = cmin(DV, floorPow2(cmax(1, 32 * THREADS / D)));
  __host__ __device__ static constexpr int bytes(int bq, int bk) {
    return 4 * (bq * (D + 1) + 2 * D + DVT + bk * (D + 1) + bk * DVT + DVT * (D + 1) + 3 * bq +
                2 * bk + E1) +
           Cfg::CK;
  }
  // Queries per tile: at most 32 accumulator registers per thread.
  static constexpr int BQ0 = cmin(floorPow2(cmax(1, Cfg::BLOCK_Q)), cmax(1, 32 * THREADS / DVT));
  static constexpr int BK = 16; // keys per tile: Sigma formation is register-bound, not load-bound
  __host__ __device__ static constexpr int fitBQ(int bq) { return bq > 1 && bytes(bq, BK) > kSharedBudget ? fitBQ(bq / 2) : bq; }
  static constexpr int BQ = fitBQ(BQ0);
  static_assert(bytes(BQ, BK) <= kSharedBudget, "dipole tiles exceed 48 KB of shared memory");
};

/// Grid (CQ, B*H), block THREADS.
template <class Cfg> __device__ void dipole(const MuseParams &p) {
  using Tl = DipoleTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, THREADS = Cfg::THREADS;
  constexpr int E = Cfg::NEAR, BQ = Tl::BQ, BK = Tl::BK, DVT = Tl::DVT, F = 1 + D + DV;
  using T = typename Cfg::T;
  using MtS = MicroTile<DVT, D, THREADS>; // Sigma (value row a, key column d)
  using MtO = MicroTile<BQ, DVT, THREADS>; // output (query, value row)
  static_assert(DV % DVT == 0, "value-row tile must divide the value dim");
  // Threads per key for the weights: a warp-aligned power of two.
  constexpr int kGroup = cmin(32, cmax(1, THREADS / BK));
  static_assert(THREADS % kGroup == 0 && (BK * kGroup) % 32 == 0, "weight groups must fill whole warps");

  __shared__ float rs[BQ][D + 1]; // residuals r_n
  __shared__ float cen[D];
  __shared__ float kbar[D];
  __shared__ float vbar[DVT];
  __shared__ float ks[BK][D + 1]; // k_l, then k_l - kbar
  __shared__ float vs[BK][DVT];   // v_l, then (w_l / Z)(v_l - vbar)
  __shared__ float sig[DVT][D + 1];
  __shared__ float prob[BQ], lse[BQ];
  __shared__ int qidx[BQ];
  __shared__ float wk[BK];
  __shared__ unsigned char isNear[CK];

  const int tid = threadIdx.x;
  const int i = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
  if (qcount == 0)
    return;
  const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
  const float *sum_i = p.summaries + ((long long)bh * CQ + i) * CK * F;
  const int *koff = p.k_offsets + (long long)hi.kh * (CK + 1);
  const int *kperm = p.k_perm + (long long)hi.kh * p.M;

  for (int d = tid; d < D; d += THREADS)
    cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];
  for (int j = tid; j < CK; j += THREADS)
    isNear[j] = 0;
  __syncthreads();
  if constexpr (E > 0) {
    const int *nl = p.near + ((long long)bh * CQ + i) * E;
    for (int e = tid; e < E; e += THREADS) {
      const int j = nl[e];
      if (j >= 0)
        isNear[j] = 1;
    }
  }

  const MtS mtS(tid);
  const MtO mtO(tid);
  for (int n0 = 0; n0 < qcount; n0 += BQ) {
    const int tq = cmin(BQ, qcount - n0);
    __syncthreads(); // the previous query tile is done with rs, qidx, lse
    for (int r = tid; r < BQ; r += THREADS) {
      const int n = r < tq ? qperm[n0 + r] : -1;
      qidx[r] = n;
      lse[r] = r < tq ? p.row_lse[(long long)bh * p.N + n] : 0.f;
    }
    __syncthreads();
    for (int e = tid; e < BQ * D; e += THREADS) {
      const int r = e / D, d = e - r * D;
      rs[r][d] = r < tq ? __fsub_rn(scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, qidx[r]) + d)), cen[d]) : 0.f;
    }

    for (int a0 = 0; a0 < DV; a0 += DVT) {
      float acc[MtO::TM][MtO::TN] = {};
      for (int j = 0; j < CK; ++j) {
        const float lnm = sum_i[(long long)j * F];
        if (lnm == -kInf() || isNear[j])
          continue; // uniform over the block: empty or exact
        __syncthreads(); // the previous pair is done with kbar, vbar, prob, sig
        for (int d = tid; d < D; d += THREADS)
          kbar[d] = sum_i[(long long)j * F + 1 + d];
        for (int a = tid; a < DVT; a += THREADS)
          vbar[a] = sum_i[(long long)j * F + 1 + D + a0 + a];
        __syncthreads();
        for (int r = tid; r < BQ; r += THREADS)
          prob[r] = r < tq ? expf(lnm + dot<D>(rs[r], kbar) - lse[r]) : 0.f;

        float sg[MtS::TM][MtS::TN] = {};
        const int kstart = koff[j], kcount = koff[j + 1] - kstart;
        for (int l0 = 0; l0 < kcount; l0 += BK) {
          const int tk = cmin(BK, kcount - l0);
          __syncthreads(); // the previous key tile is no longer read
          // Each thread reads its rows' key index itself: no dependent round trip.
          for (int e = tid; e < BK * D; e += THREADS) {
            const int l = e / D, d = e - l * D;
            ks[l][d] = l < tk ? loadf<T>(p.k, kRow(p, hi.kh, kperm[kstart + l0 + l]) + d) : 0.f;
          }
          for (int e = tid; e < BK * DVT; e += THREADS) {
            const int l = e / DVT, a = e - l * DVT;
            vs[l][a] = l < tk ? loadf<T>(p.v, vRow(p, hi.kh, kperm[kstart + l0 + l]) + a0 + a) : 0.f;
          }
          __syncthreads();
          // w_l / Z = e^{qbar . k_l - lnmass}: GROUP threads per key, partial
          // dots over strided components, reduced by shuffles.
          for (int e = tid; e < BK * kGroup; e += THREADS) {
            const int l = e / kGroup, g = e - l * kGroup;
            float part = 0.f;
#pragma unroll
            for (int d = g; d < D; d += kGroup)
              part = fmaf(cen[d], ks[l][d], part);
#pragma unroll
            for (int s = kGroup / 2; s > 0; s >>= 1)
              part += __shfl_xor_sync(0xffffffffu, part, s, kGroup);
            if (g == 0)
              wk[l] = l < tk ? expf(part - lnm) : 0.f;
          }
          __syncthreads();
          for (int e = tid; e < BK * D; e += THREADS) {
            const int l = e / D, d = e - l * D;
            ks[l][d] -= kbar[d];
          }
          for (int e = tid; e < BK * DVT; e += THREADS) {
            const int l = e / DVT, a = e - l * DVT;
            vs[l][a] = wk[l] * (vs[l][a] - vbar[a]);
          }
          __syncthreads();
          // Sigma(a, d) += sum_l vs[l][a] ks[l][d]
          gemmAccumulate<1, DVT, D + 1, 1>(mtS, sg, &vs[0][0], &ks[0][0], tk);
        }
#pragma unroll
        for (int r = 0; r < MtS::TM; ++r)
#pragma unroll
          for (int c = 0; c < MtS::TN; ++c)
            if (mtS.valid(r, c))
              sig[mtS.row(r)][mtS.col(c)] = sg[r][c];
        __syncthreads();
        // acc(n, a) += p_nj * (r_n . Sigma_ij[a])
        float y[MtO::TM][MtO::TN] = {};
        gemmAccumulate<D + 1, 1, 1, D + 1>(mtO, y, &rs[0][0], &sig[0][0], D);
#pragma unroll
        for (int r = 0; r < MtO::TM; ++r)
#pragma unroll
          for (int c = 0; c < MtO::TN; ++c)
            acc[r][c] = fmaf(prob[mtO.row(r) < BQ ? mtO.row(r) : 0], y[r][c], acc[r][c]);
      }
#pragma unroll
      for (int r = 0; r < MtO::TM; ++r) {
        const int q = mtO.row(r);
        if (q >= tq)
          continue;
        float *o = p.o + oRow(p, hi.b, hi.h, qidx[q]) + a0;
#pragma unroll
        for (int c = 0; c < MtO::TN; ++c)
          if (mtO.valid(r, c))
            o[mtO.col(c)] += acc[r][c];
      }
    }
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_DIPOLE_CUH
