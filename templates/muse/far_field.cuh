//===- far_field.cuh - Stage 2: multipole terms plus the exact near field -===//
//
// Block (i, bh): the queries of cluster i, BQ at a time. Per query n, with
// x_n = scale*q_n and r_n = x_n - qbar_i:
//   far key cluster j (non-empty, not near):  s_nj = lnmass_ij + r_n . kbar_ij,
//                                             value vbar_ij
//   near key cluster j: every member l exactly: s_nl = x_n . k_l, value v_l
// folded by an online softmax into o_n (fp32) and lse_n (row_lse, and lse
// when non-null). The dipole kernel adds its correction to o afterwards,
// reading row_lse. Summaries of i pass through shared memory in tiles of TT
// key clusters; near keys in tiles of TT keys.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_FAR_FIELD_CUH
#define MUSE_TEMPLATES_FAR_FIELD_CUH

#include "muse/common.cuh"
#include "muse/online_softmax.cuh"

namespace muse {

template <class Cfg> struct FarFieldTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV, THREADS = Cfg::THREADS;
  static constexpr int E1 = Cfg::NEAR > 0 ? Cfg::NEAR : 1;
  __host__ __device__ static constexpr int bytes(int bq, int tt) {
    return 4 * (bq * (D + 1) + D + tt * (D + 1) + tt * DV + tt + bq * (tt + 1) + 3 * bq + bq + tt +
                E1) +
           Cfg::CK;
  }
  // Queries per tile: at most 64 accumulator registers per thread.
  static constexpr int BQ0 = cmin(floorPow2(cmax(1, Cfg::BLOCK_Q)), cmax(1, 64 * THREADS / DV));
  static constexpr int TT0 = floorPow2(cmax(8, Cfg::BLOCK_K));
  // Halve the larger tile (columns first at a tie) until the tiles fit.
  __host__ __device__ static constexpr int fitBQ(int bq, int tt) {
    return bytes(bq, tt) <= kSharedBudget || (bq <= 8 && tt <= 8) ? bq
           : (tt >= bq && tt > 8) || bq <= 8                      ? fitBQ(bq, tt / 2)
                                                                  : fitBQ(bq / 2, tt);
  }
  __host__ __device__ static constexpr int fitTT(int bq, int tt) {
    return bytes(bq, tt) <= kSharedBudget || (bq <= 8 && tt <= 8) ? tt
           : (tt >= bq && tt > 8) || bq <= 8                      ? fitTT(bq, tt / 2)
                                                                  : fitTT(bq / 2, tt);
  }
  static constexpr int BQ = fitBQ(BQ0, TT0);
  static constexpr int TT = fitTT(BQ0, TT0);
  static_assert(bytes(BQ, TT) <= kSharedBudget, "far_field tiles exceed 48 KB of shared memory");
};

/// Grid (CQ, B*H), block THREADS.
template <class Cfg> __device__ void far_field(const MuseParams &p) {
  using Tl = FarFieldTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, THREADS = Cfg::THREADS;
  constexpr int E = Cfg::NEAR, BQ = Tl::BQ, TT = Tl::TT, F = 1 + D + DV;
  using T = typename Cfg::T;
  using Own = Owner<BQ, DV, THREADS>;

  __shared__ float xs[BQ][D + 1]; // scaled queries; padded rows
  __shared__ float cen[D];
  __shared__ float colK[TT][D + 1]; // kbar_ij or k_l
  __shared__ float colV[TT][DV];    // vbar_ij or v_l
  __shared__ float bias[TT];        // lnmass_ij, -inf for empty or near j
  __shared__ float s[BQ][TT + 1];   // logits, then weights
  __shared__ float mrow[BQ], lrow[BQ], alpha[BQ];
  __shared__ int qidx[BQ];
  __shared__ int kidx[TT];
  __shared__ int nearList[Tl::E1];
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
      nearList[e] = j;
      if (j >= 0)
        isNear[j] = 1;
    }
  }

  const Own own(tid);
  for (int n0 = 0; n0 < qcount; n0 += BQ) {
    const int tq = cmin(BQ, qcount - n0);
    __syncthreads(); // the previous query tile is written out
    for (int r = tid; r < BQ; r += THREADS) {
      qidx[r] = r < tq ? qperm[n0 + r] : -1;
      mrow[r] = -kInf();
      lrow[r] = 0.f;
    }
    __syncthreads();
    for (int e = tid; e < BQ * D; e += THREADS) {
      const int r = e / D, d = e - r * D;
      xs[r][d] = r < tq ? scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, qidx[r]) + d)) : 0.f;
    }
    float acc[Own::NR][Own::NC] = {};

    // Far field: every key cluster's summary of pair (i, j) as one column.
    for (int j0 = 0; j0 < CK; j0 += TT) {
      __syncthreads(); // the previous column tile is no longer read
      for (int e = tid; e < TT * D; e += THREADS) {
        const int t = e / D, d = e - t * D;
        colK[t][d] = j0 + t < CK ? sum_i[(long long)(j0 + t) * F + 1 + d] : 0.f;
      }
      for (int e = tid; e < TT * DV; e += THREADS) {
        const int t = e / DV, d = e - t * DV;
        colV[t][d] = j0 + t < CK ? sum_i[(long long)(j0 + t) * F + 1 + D + d] : 0.f;
      }
      for (int t = tid; t < TT; t += THREADS) {
        const int j = j0 + t;
        bias[t] = j < CK && !isNear[j] ? sum_i[(long long)j * F] : -kInf();
      }
      __syncthreads();
      for (int e = tid; e < BQ * TT; e += THREADS) {
        const int r = e / TT, t = e - r * TT;
        const float b = bias[t];
        s[r][t] = b == -kInf() ? -kInf() : b + residualDot<D>(xs[r], cen, colK[t]);
      }
      __syncthreads();
      softmaxStep<BQ, TT, TT + 1, THREADS>(&s[0][0], mrow, lrow, alpha);
      rescaleAccumulate<Own, TT, TT + 1, DV>(own, acc, &s[0][0], &colV[0][0], alpha);
    }

    // Near field: the members of each near cluster, exactly.
    if constexpr (E > 0) {
      for (int e = 0; e < E; ++e) {
        const int j = nearList[e];
        if (j < 0)
          break; // -1 pads follow the chosen clusters
        const int kstart = koff[j], kcount = koff[j + 1] - kstart;
        for (int l0 = 0; l0 < kcount; l0 += TT) {
          const int tk = cmin(TT, kcount - l0);
          __syncthreads();
          for (int t = tid; t < TT; t += THREADS)
            kidx[t] = t < tk ? kperm[kstart + l0 + t] : -1;
          __syncthreads();
          for (int e2 = tid; e2 < TT * D; e2 += THREADS) {
            const int t = e2 / D, d = e2 - t * D;
            colK[t][d] = t < tk ? loadf<T>(p.k, kRow(p, hi.kh, kidx[t]) + d) : 0.f;
          }
          for (int e2 = tid; e2 < TT * DV; e2 += THREADS) {
            const int t = e2 / DV, d = e2 - t * DV;
            colV[t][d] = t < tk ? loadf<T>(p.v, vRow(p, hi.kh, kidx[t]) + d) : 0.f;
          }
          __syncthreads();
          for (int e2 = tid; e2 < BQ * TT; e2 += THREADS) {
            const int r = e2 / TT, t = e2 - r * TT;
            s[r][t] = t < tk ? dot<D>(xs[r], colK[t]) : -kInf();
          }
          __syncthreads();
          softmaxStep<BQ, TT, TT + 1, THREADS>(&s[0][0], mrow, lrow, alpha);
          rescaleAccumulate<Own, TT, TT + 1, DV>(own, acc, &s[0][0], &colV[0][0], alpha);
        }
      }
    }

    __syncthreads(); // mrow and lrow are final
#pragma unroll
    for (int r = 0; r < Own::NR; ++r) {
      const int q = own.row(r);
      if (!own.valid(r) || q >= tq)
        continue;
      float *o = p.o + oRow(p, hi.b, hi.h, qidx[q]);
      const float l = lrow[q];
#pragma unroll
      for (int c = 0; c < Own::NC; ++c)
        o[own.col(c)] = acc[r][c] / l;
    }
    for (int r = tid; r < tq; r += THREADS) {
      const float lse = mrow[r] + logf(lrow[r]);
      const long long at = (long long)bh * p.N + qidx[r];
      p.row_lse[at] = lse;
      if (p.lse)
        p.lse[at] = lse;
    }
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_FAR_FIELD_CUH
