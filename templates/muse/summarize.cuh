//===- summarize.cuh - Stage 1: per (query cluster, key cluster) summaries -===//
//
// Block (j, bh): key cluster j of kv head kh(bh) against every query centroid
// qbar_i of head bh (scale folded in). For each pair:
//   m_ij = max_{l in j} qbar_i . k_l,   w_il = e^{qbar_i . k_l - m_ij},
//   Z_ij = sum w_il,  kbar_ij = sum w_il k_l / Z_ij,  vbar_ij = sum w_il v_l / Z_ij
// written as summaries[bh][i][j] = (m_ij + ln Z_ij, kbar_ij, vbar_ij); an empty
// cluster j gets (-inf, 0, 0). The max is per pair, so no global max is needed.
// Centroids go through shared memory in tiles of TI, keys in tiles of BK.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_SUMMARIZE_CUH
#define MUSE_TEMPLATES_SUMMARIZE_CUH

#include "muse/common.cuh"
#include "muse/online_softmax.cuh"

namespace muse {

template <class Cfg> struct SummarizeTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV, THREADS = Cfg::THREADS;
  // Centroids per pass: at most 32 accumulator registers per thread.
  static constexpr int TI = cmin(Cfg::CQ, cmax(1, 32 * THREADS / (D + DV)));
  __host__ __device__ static constexpr int bytes(int bk) {
    return 4 * (TI * (D + 1) + bk * (D + 1) + bk * DV + TI * (bk + 1) + 3 * TI + bk);
  }
  __host__ __device__ static constexpr int fitBK(int bk) { return bk > 8 && bytes(bk) > kSharedBudget ? fitBK(bk / 2) : bk; }
  static constexpr int BK = fitBK(floorPow2(cmax(8, Cfg::BLOCK_K)));
  static_assert(bytes(BK) <= kSharedBudget, "summarize tiles exceed 48 KB of shared memory");
};

/// Grid (CK, B*H), block THREADS.
template <class Cfg> __device__ void summarize(const MuseParams &p) {
  using Tl = SummarizeTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, THREADS = Cfg::THREADS;
  constexpr int TI = Tl::TI, BK = Tl::BK, F = 1 + D + DV;
  using T = typename Cfg::T;
  using OwnK = Owner<TI, D, THREADS>;
  using OwnV = Owner<TI, DV, THREADS>;

  __shared__ float cen[TI][D + 1]; // padded rows: threads of a warp read different rows
  __shared__ float ks[BK][D + 1];
  __shared__ float vs[BK][DV];
  __shared__ float w[TI][BK + 1];
  __shared__ float mrow[TI], zrow[TI], alpha[TI];
  __shared__ int kidx[BK];

  const int tid = threadIdx.x;
  const int j = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int *koff = p.k_offsets + (long long)hi.kh * (CK + 1);
  const int kstart = koff[j], kcount = koff[j + 1] - kstart;
  const int *kperm = p.k_perm + (long long)hi.kh * p.M + kstart;
  float *out = p.summaries + ((long long)bh * CQ * CK + j) * F; // + i*CK*F for pair i

  if (kcount == 0) {
    for (long long e = tid; e < (long long)CQ * F; e += THREADS) {
      const int i = (int)(e / F), f = (int)(e - (long long)i * F);
      out[(long long)i * CK * F + f] = f == 0 ? -kInf() : 0.f;
    }
    return;
  }

  const OwnK ownK(tid);
  const OwnV ownV(tid);
  for (int i0 = 0; i0 < CQ; i0 += TI) {
    const int ti = cmin(TI, CQ - i0);
    __syncthreads(); // the previous pass is done with cen, mrow, zrow
    const float *qc = p.q_centroids + ((long long)bh * CQ + i0) * D;
    for (int e = tid; e < TI * D; e += THREADS) {
      const int r = e / D, d = e - r * D;
      cen[r][d] = r < ti ? qc[(long long)r * D + d] : 0.f;
    }
    for (int r = tid; r < TI; r += THREADS) {
      mrow[r] = -kInf();
      zrow[r] = 0.f;
    }
    float accK[OwnK::NR][OwnK::NC] = {};
    float accV[OwnV::NR][OwnV::NC] = {};

    for (int l0 = 0; l0 < kcount; l0 += BK) {
      const int tk = cmin(BK, kcount - l0);
      __syncthreads(); // the previous key tile is no longer read
      for (int l = tid; l < BK; l += THREADS)
        kidx[l] = l < tk ? kperm[l0 + l] : -1;
      __syncthreads();
      for (int e = tid; e < BK * D; e += THREADS) {
        const int l = e / D, d = e - l * D;
        ks[l][d] = l < tk ? loadf<T>(p.k, kRow(p, hi.kh, kidx[l]) + d) : 0.f;
      }
      for (int e = tid; e < BK * DV; e += THREADS) {
        const int l = e / DV, d = e - l * DV;
        vs[l][d] = l < tk ? loadf<T>(p.v, vRow(p, hi.kh, kidx[l]) + d) : 0.f;
      }
      __syncthreads();
      for (int e = tid; e < TI * BK; e += THREADS) {
        const int r = e / BK, l = e - r * BK;
        w[r][l] = l < tk ? dot<D>(cen[r], ks[l]) : -kInf();
      }
      __syncthreads();
      softmaxStep<TI, BK, BK + 1, THREADS>(&w[0][0], mrow, zrow, alpha);
      rescaleAccumulate<OwnK, BK, BK + 1, D + 1>(ownK, accK, &w[0][0], &ks[0][0], alpha);
      rescaleAccumulate<OwnV, BK, BK + 1, DV>(ownV, accV, &w[0][0], &vs[0][0], alpha);
    }
    __syncthreads(); // zrow and mrow are final
#pragma unroll
    for (int r = 0; r < OwnK::NR; ++r) {
      const int i = ownK.row(r);
      if (!ownK.valid(r) || i >= ti)
        continue;
      const float z = zrow[i];
#pragma unroll
      for (int c = 0; c < OwnK::NC; ++c)
        out[(long long)(i0 + i) * CK * F + 1 + ownK.col(c)] = accK[r][c] / z;
    }
#pragma unroll
    for (int r = 0; r < OwnV::NR; ++r) {
      const int i = ownV.row(r);
      if (!ownV.valid(r) || i >= ti)
        continue;
      const float z = zrow[i];
#pragma unroll
      for (int c = 0; c < OwnV::NC; ++c)
        out[(long long)(i0 + i) * CK * F + 1 + D + ownV.col(c)] = accV[r][c] / z;
    }
    for (int i = tid; i < ti; i += THREADS)
      out[(long long)(i0 + i) * CK * F] = mrow[i] + logf(zrow[i]);
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_SUMMARIZE_CUH
