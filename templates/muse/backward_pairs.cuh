//===- backward_pairs.cuh - Stage-1 pair sums per query cluster -----------===//
//
// ALGORITHM.md section 5, stage 1: for every pair (i, j) the key kernel needs
// three sums over the members n of query cluster i (r_n = x_n - qbar_i;
// P_nj, g_nj from backward_rows, zero for near and empty pairs):
//   gL_ij = sum_n g_nj,  gK_ij = sum_n g_nj r_n,  gV_ij = sum_n P_nj dO_n
// written to bwd_pairs[i, j] = (gL, gK[D], gV[DV]). Block (i, bh) reads its
// members once, in chunks staged in shared memory, and forms all CK pairs as
// one product (CK x |i|) * (|i| x (D + DV)) on the CUDA cores; the block of
// backward_keys that owns key cluster j then reads the sums instead of
// re-reading every member of every query cluster. Each sum runs over the
// members in permutation order with one fmaf per term: deterministic.
// Grid (CQ, B*H) (causal levels: the served view, whose q_offsets / q_perm
// group the served queries), block kPairThreads.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_PAIRS_CUH
#define MUSE_TEMPLATES_BACKWARD_PAIRS_CUH

#include "muse/backward_common.cuh"

namespace muse {

constexpr int kPairThreads = 256;

template <class Cfg> __device__ void backward_pairs(const MuseParams &p) {
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  constexpr int COLS = D + DV;
  // Output tile: JT key clusters x CT columns of (r | dO); 16 x 16 threads,
  // each 4 clusters (adjacent) x 8 columns (stride 16). MT members per chunk.
  constexpr int JT = 64, CT = 128, MT = 16, RJ = 4, RC = 8;
  static_assert(kPairThreads == (JT / RJ) * (CT / RC), "one micro-tile per thread");
  using T = typename Cfg::T;
  __shared__ float feat[MT][CT];
  __shared__ __align__(16) float wg[MT][JT], wp[MT][JT];
  __shared__ float cen[D];

  const int tid = threadIdx.x, tj = tid / (CT / RC), tc = tid % (CT / RC);
  const int i = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
  const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
  float *out = p.bwd_pairs + ((long long)bh * CQ + i) * CK * F;
  for (int d = tid; d < D; d += kPairThreads)
    cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];

  for (int jt = 0; jt < CK; jt += JT) {
    for (int ct = 0; ct < COLS; ct += CT) {
      float acc[RJ][RC], gl = 0.f;
#pragma unroll
      for (int a = 0; a < RJ; ++a)
#pragma unroll
        for (int c = 0; c < RC; ++c)
          acc[a][c] = 0.f;
      // Columns below D take g (the r_n part), the rest P (the dO_n part).
      bool isK[RC];
#pragma unroll
      for (int c = 0; c < RC; ++c)
        isK[c] = ct + tc + 16 * c < D;
      for (int m0 = 0; m0 < qcount; m0 += MT) {
        const int mEnd = cmin(MT, qcount - m0);
        __syncthreads(); // the previous chunk (and cen) is read / written
        for (int e = tid; e < MT * CT; e += kPairThreads) {
          const int m = e / CT, c = e - m * CT, col = ct + c;
          float v = 0.f;
          if (m < mEnd && col < COLS) {
            const int n = qperm[m0 + m];
            v = col < D ? scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, n) + col)) - cen[col]
                        : p.dout[doRow(p, hi.b, hi.h, n) + (col - D)];
          }
          feat[m][c] = v;
        }
        for (int e = tid; e < MT * JT; e += kPairThreads) {
          const int m = e / JT, jj = e - m * JT, j = jt + jj;
          float P = 0.f, g = 0.f;
          if (m < mEnd && j < CK) {
            const float *pg = p.bwd_pg + ((long long)bh * p.N + qperm[m0 + m]) * 2 * CK + 2 * j;
            P = pg[0];
            g = pg[1];
          }
          wp[m][jj] = P;
          wg[m][jj] = g;
        }
        __syncthreads();
        for (int m = 0; m < mEnd; ++m) {
          const float4 g4 = *reinterpret_cast<const float4 *>(&wg[m][tj * RJ]);
          const float4 p4 = *reinterpret_cast<const float4 *>(&wp[m][tj * RJ]);
          const float gv[RJ] = {g4.x, g4.y, g4.z, g4.w}, pv[RJ] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
          for (int c = 0; c < RC; ++c) {
            const float f = feat[m][tc + 16 * c];
#pragma unroll
            for (int a = 0; a < RJ; ++a)
              acc[a][c] = fmaf(isK[c] ? gv[a] : pv[a], f, acc[a][c]);
          }
          if (ct == 0 && tid < JT)
            gl += wg[m][tid];
        }
      }
#pragma unroll
      for (int a = 0; a < RJ; ++a) {
        const int j = jt + tj * RJ + a;
        if (j >= CK)
          continue;
#pragma unroll
        for (int c = 0; c < RC; ++c) {
          const int col = ct + tc + 16 * c;
          if (col < COLS)
            out[(long long)j * F + 1 + col] = acc[a][c];
        }
      }
      if (ct == 0 && tid < JT && jt + tid < CK)
        out[(long long)(jt + tid) * F] = gl;
    }
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_PAIRS_CUH
