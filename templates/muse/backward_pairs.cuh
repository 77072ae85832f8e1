//===- backward_pairs.cuh - Stage-1 pair sums per query cluster -----------===//
//
// ALGORITHM.md section 5, stage 1: for every pair (i, j) the key kernel needs
// three sums over the members n of query cluster i (r_n = x_n - qbar_i;
// P_nj, g_nj from backward_rows, zero for near and empty pairs):
//   gL_ij = sum_n g_nj,  gK_ij = sum_n g_nj r_n,  gV_ij = sum_n P_nj dO_n
// written to bwd_pairs[i, j] = (gL, gK[D], gV[DV]); at order 0 the first
// slot holds off_ij = gL - gK.kbar_ij - gV.vbar_ij instead (0 where the pair
// has no stage-1 term), the per-pair constant of the keys' a_li, formed here
// once rather than by every key block of j. Block (i, bh) reads its
// members once, in chunks staged in shared memory, and forms all CK pairs as
// one product (CK x |i|) * (|i| x (D + DV)) on the CUDA cores; the block of
// backward_keys that owns key cluster j then reads the sums instead of
// re-reading every member of every query cluster. Each sum runs over the
// members in permutation order with one fmaf per term: deterministic.
// 16-bit inputs with D = DV = 64 run the same product on the tensor cores
// (pairsMma): r, g and P are fp32, so each is staged as a pair of T tiles
// hi + lo and the sums take three mma.sync products (hi·hi, hi·lo, lo·hi),
// about 16 significant bits like the other split products of the backward;
// dO is exact in T (its lo tile is zero), so gV takes two (P_hi·dO,
// P_lo·dO); gL stays an fp32 sum. Every sum still runs in a fixed order.
// Grid (CQ, B*H) (causal levels: the served view, whose q_offsets / q_perm
// group the served queries), block kPairThreads.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_PAIRS_CUH
#define MUSE_TEMPLATES_BACKWARD_PAIRS_CUH

#include "muse/backward_common.cuh"
#include "muse/smem_gemm.cuh"

namespace muse {

constexpr int kPairThreads = 256;

/// Block (i, bh) of backward_pairs: the members of query cluster i (qcount
/// of them, q_perm from qperm) and its output rows bwd_pairs[i, 0..CK);
/// writes the centroid of i into cen (D floats of shared memory; the
/// caller's first barrier publishes it).
template <class Cfg> struct PairCluster {
  int qcount;
  const int *qperm;
  float *out;
  __device__ PairCluster(const MuseParams &p, int i, int bh, float *cen) {
    constexpr int D = Cfg::D, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + Cfg::DV;
    const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
    const int qstart = qoff[i];
    qcount = qoff[i + 1] - qstart;
    qperm = p.q_perm + (long long)bh * p.N + qstart;
    out = p.bwd_pairs + ((long long)bh * CQ + i) * CK * F;
    for (int d = threadIdx.x; d < D; d += kPairThreads)
      cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];
  }
};

/// Order 0: off_ij = gL - (gK.kbar_ij + gV.vbar_ij) into the first slot of
/// `pair` (which holds gL; gK, gV follow) where the pair has a stage-1 term,
/// else 0. `dot` is the bracket if the caller formed it; null: taken here
/// from the stored gK, gV.
template <class Cfg>
__device__ __forceinline__ void pairsStoreOff(const MuseParams &p, int bh, int i, int j, float *pair,
                                              const float *dot) {
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  const float *sum_ij = p.summaries + (((long long)bh * CQ + i) * CK + j) * F;
  if (sum_ij[0] == -kInf()) { // empty key cluster: kbar, vbar are not defined
    pair[0] = 0.f;
    return;
  }
  float s = 0.f;
  if (dot)
    s = *dot;
  else
    for (int c = 0; c < D + DV; ++c)
      s = fmaf(pair[1 + c], sum_ij[1 + c], s);
  pair[0] -= s;
}

/// The fp32 path (every dtype the tensor-core path does not take).
template <class Cfg> __device__ void backward_pairs_fp32(const MuseParams &p) {
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
  const PairCluster<Cfg> pc(p, i, bh, cen);
  const int qcount = pc.qcount;
  const int *qperm = pc.qperm;
  float *out = pc.out;

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
                        : loadf<T>(p.dout, doRow(p, hi.b, hi.h, n) + (col - D));
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
    if constexpr (Cfg::ORDER == 0) {
      __syncthreads(); // every column of the pass is written (and visible to the block)
      if (tid < JT && jt + tid < CK)
        pairsStoreOff<Cfg>(p, bh, i, jt + tid, out + (long long)(jt + tid) * F, nullptr);
    }
  }
}

/// Tiles of pairsMma: JG key clusters a pass (a warp per 16 clusters and
/// half of the columns: r with g, or dO with P), MT members a chunk.
template <class Cfg> struct PairMmaTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV, COLS = D + DV;
  static constexpr int JG = 64, MT = 32, FLD = COLS + 8, WLD = JG + 8;
  static constexpr bool usable = TensorCoreType<typename Cfg::T>::value && D == 64 && DV == 64;
  static constexpr int bytes = 2 * (2 * MT * FLD + 4 * MT * WLD) + 4 * (MT * JG + 2 * JG + D);
  static_assert(!usable || kPairThreads == 32 * 2 * (JG / 16), "a warp per 16 clusters and column half");
  static_assert(!usable || bytes <= kSharedBudget, "pair tiles exceed 48 KB of shared memory");
};

/// backward_pairs on the tensor cores (PairMmaTiles::usable): per pass of JG
/// key clusters, per chunk of MT members, the warp (jtile = warp % 4,
/// half = warp / 4) adds Wᵀ·F over the chunk to its 16 x 64 tile, W = g for
/// the r columns and P for the dO columns, all operands as hi + lo (dO's lo
/// is zero: those warps skip the hi·lo product).
template <class Cfg> __device__ void pairsMma(const MuseParams &p) {
  using Tl = PairMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  constexpr int COLS = Tl::COLS, JG = Tl::JG, MT = Tl::MT, FLD = Tl::FLD, WLD = Tl::WLD;
  constexpr int NO = COLS / 2 / 8; // n8 tiles of a column half
  __shared__ __align__(16) T fHi[MT * FLD], fLo[MT * FLD];     // (r | dO) of the chunk's members
  __shared__ __align__(16) T wHi[2][MT * WLD], wLo[2][MT * WLD]; // [0] g, [1] P, members x clusters
  __shared__ float gS[MT][JG];                                    // g in fp32 for gL
  __shared__ float offPart[2][JG];                                // order 0: the halves of off_ij's dot
  __shared__ float cen[D];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int jtile = warp & 3, half = warp >> 2, col0 = half * (COLS / 2);
  const int i = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const PairCluster<Cfg> pc(p, i, bh, cen);
  const int qcount = pc.qcount;
  const int *qperm = pc.qperm;
  float *out = pc.out;

  for (int jg = 0; jg < CK; jg += JG) {
    float acc[NO][4];
    zeroFragments(acc);
    float gl = 0.f;
    for (int m0 = 0; m0 < qcount; m0 += MT) {
      const int mEnd = cmin(MT, qcount - m0);
      __syncthreads(); // the previous chunk is no longer read (and cen is written)
      // Every load of the chunk is issued before the first conversion (the
      // stores to shared memory would otherwise order each element's load
      // behind the previous one's store): EF items of (r | dO), EW of (g, P).
      constexpr int EF = MT * (COLS / 2) / kPairThreads, EW = MT * (JG / 2) / kPairThreads;
      static_assert(EF * kPairThreads == MT * (COLS / 2) && EW * kPairThreads == MT * (JG / 2),
                    "whole items a thread");
      float2 fv[EF];
      float4 wv[EW];
#pragma unroll
      for (int k = 0; k < EF; ++k) {
        const int e = tid + k * kPairThreads, m = e / (COLS / 2), c = 2 * (e - m * (COLS / 2));
        fv[k] = make_float2(0.f, 0.f);
        if (m < mEnd) {
          const int n = qperm[m0 + m];
          if (c < D) {
            const long long row = qRow(p, hi.b, hi.h, n);
            fv[k] = make_float2(loadf<T>(p.q, row + c), loadf<T>(p.q, row + c + 1));
          } else {
            const long long at = doRow(p, hi.b, hi.h, n) + (c - D);
            fv[k] = make_float2(loadf<T>(p.dout, at), loadf<T>(p.dout, at + 1));
          }
        }
      }
#pragma unroll
      for (int k = 0; k < EW; ++k) {
        const int e = tid + k * kPairThreads, m = e / (JG / 2), j = jg + 2 * (e - m * (JG / 2));
        wv[k] = make_float4(0.f, 0.f, 0.f, 0.f); // (P_j, g_j, P_j+1, g_j+1)
        if (m < mEnd && j < CK) {
          const float *pg = p.bwd_pg + ((long long)bh * p.N + qperm[m0 + m]) * 2 * CK + 2 * j;
          wv[k].x = pg[0], wv[k].y = pg[1];
          if (j + 1 < CK)
            wv[k].z = pg[2], wv[k].w = pg[3];
        }
      }
#pragma unroll
      for (int k = 0; k < EF; ++k) {
        const int e = tid + k * kPairThreads, m = e / (COLS / 2), c = 2 * (e - m * (COLS / 2));
        float f0 = fv[k].x, f1 = fv[k].y;
        if (c < D && m < mEnd) {
          f0 = scaled(p, f0) - cen[c];
          f1 = scaled(p, f1) - cen[c + 1];
        }
        unsigned h, l;
        split2<T>(f0, f1, h, l);
        *reinterpret_cast<unsigned *>(fHi + m * FLD + c) = h;
        *reinterpret_cast<unsigned *>(fLo + m * FLD + c) = l;
      }
#pragma unroll
      for (int k = 0; k < EW; ++k) {
        const int e = tid + k * kPairThreads, m = e / (JG / 2), jj = 2 * (e - m * (JG / 2));
        unsigned h, l;
        split2<T>(wv[k].y, wv[k].w, h, l);
        *reinterpret_cast<unsigned *>(wHi[0] + m * WLD + jj) = h;
        *reinterpret_cast<unsigned *>(wLo[0] + m * WLD + jj) = l;
        split2<T>(wv[k].x, wv[k].z, h, l);
        *reinterpret_cast<unsigned *>(wHi[1] + m * WLD + jj) = h;
        *reinterpret_cast<unsigned *>(wLo[1] + m * WLD + jj) = l;
        gS[m][jj] = wv[k].y;
        gS[m][jj + 1] = wv[k].w;
      }
      __syncthreads();
      const T *ah = wHi[half], *al = wLo[half];
#pragma unroll
      for (int kk = 0; kk < MT / 16; ++kk) {
        unsigned aH[4], aL[4];
        loadATrans<WLD, T>(aH, ah, 16 * jtile, 16 * kk, lane);
        loadATrans<WLD, T>(aL, al, 16 * jtile, 16 * kk, lane);
#pragma unroll
        for (int n = 0; n < NO; n += 2) {
          unsigned bH[4], bL[4];
          loadBTrans<FLD, T>(bH, fHi, 16 * kk, col0 + 8 * n, lane);
          mma16816<T>(acc[n], aH, bH[0], bH[1]);
          mma16816<T>(acc[n + 1], aH, bH[2], bH[3]);
          if (half == 0) { // r's lo part (dO is exact in T: no lo part)
            loadBTrans<FLD, T>(bL, fLo, 16 * kk, col0 + 8 * n, lane);
            mma16816<T>(acc[n], aH, bL[0], bL[1]);
            mma16816<T>(acc[n + 1], aH, bL[2], bL[3]);
          }
          mma16816<T>(acc[n], aL, bH[0], bH[1]);
          mma16816<T>(acc[n + 1], aL, bH[2], bH[3]);
        }
      }
      if (tid < JG)
        for (int m = 0; m < mEnd; ++m)
          gl += gS[m][tid];
    }
#pragma unroll
    for (int n = 0; n < NO; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int j = jg + 16 * jtile + g + (c < 2 ? 0 : 8), col = col0 + 8 * n + 2 * t + (c & 1);
        if (j < CK)
          out[(long long)j * F + 1 + col] = acc[n][c];
      }
    if (tid < JG && jg + tid < CK)
      out[(long long)(jg + tid) * F] = gl;
    if constexpr (Cfg::ORDER == 0) {
      // off_ij: this warp's half of gK.kbar + gV.vbar for its rows g, g + 8,
      // summed over the quad, then the two halves added by one thread a j.
      float part[2] = {0.f, 0.f};
#pragma unroll
      for (int n = 0; n < NO; ++n)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int j = jg + 16 * jtile + g + (c < 2 ? 0 : 8), col = col0 + 8 * n + 2 * t + (c & 1);
          if (j < CK)
            part[c >> 1] = fmaf(acc[n][c], p.summaries[(((long long)bh * CQ + i) * CK + j) * F + 1 + col],
                                part[c >> 1]);
        }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        part[h] += __shfl_xor_sync(0xffffffffu, part[h], 1);
        part[h] += __shfl_xor_sync(0xffffffffu, part[h], 2);
      }
      if (t == 0) {
        offPart[half][16 * jtile + g] = part[0];
        offPart[half][16 * jtile + g + 8] = part[1];
      }
      __syncthreads();
      if (tid < JG && jg + tid < CK) {
        const float both = offPart[0][tid] + offPart[1][tid];
        pairsStoreOff<Cfg>(p, bh, i, jg + tid, out + (long long)(jg + tid) * F, &both);
      }
      __syncthreads(); // offPart is read before the next pass writes it
    }
  }
}

template <class Cfg> __device__ void backward_pairs(const MuseParams &p) {
  if constexpr (PairMmaTiles<Cfg>::usable) {
    pairsMma<Cfg>(p);
  } else {
    backward_pairs_fp32<Cfg>(p);
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_PAIRS_CUH
