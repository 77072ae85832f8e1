//===- summarize.cuh - Stage 1: per (query cluster, key cluster) summaries -===//
//
// Block (j, bh): key cluster j of kv head kh(bh) against every query centroid
// qbar_i of head bh (scale folded in). For each pair:
//   m_ij = max_{l in j} qbar_i . k_l,   w_il = e^{qbar_i . k_l - m_ij},
//   Z_ij = sum w_il,  kbar_ij = sum w_il k_l / Z_ij,  vbar_ij = sum w_il v_l / Z_ij
// written as summaries[bh][i][j] = (m_ij + ln Z_ij, kbar_ij, vbar_ij); an empty
// cluster j gets (-inf, 0, 0). The max is per pair, so no global max is needed.
// Centroids go through shared memory in tiles of TI, keys in tiles of BK.
// 16-bit inputs take the tensor-core path (summarizeMma below).
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_SUMMARIZE_CUH
#define MUSE_TEMPLATES_SUMMARIZE_CUH

#include "muse/common.cuh"
#include "muse/online_softmax.cuh"
#include "muse/smem_gemm.cuh"

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

/// fp32 path. Grid (any x, B*H), block THREADS: key clusters strided over blockIdx.x.
template <class Cfg> __device__ void summarizeExact(const MuseParams &p) {
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
  const int bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  for (int j = blockIdx.x; j < CK; j += gridDim.x) {
    const int *koff = p.k_offsets + (long long)hi.kh * (CK + 1);
    const int kstart = koff[j], kcount = koff[j + 1] - kstart;
    const int *kperm = p.k_perm + (long long)hi.kh * p.M + kstart;
    float *out = p.summaries + ((long long)bh * CQ * CK + j) * F; // + i*CK*F for pair i

    if (kcount == 0) {
      for (long long e = tid; e < (long long)CQ * F; e += THREADS) {
        const int i = (int)(e / F), f = (int)(e - (long long)i * F);
        out[(long long)i * CK * F + f] = f == 0 ? -kInf() : 0.f;
      }
      continue;
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
  } // the next cluster starts with a barrier before any shared store
}

/// 16-bit path: keys per shared-memory chunk (a cluster of at most LK keys is
/// loaded once for every pass over the centroids).
template <class Cfg> struct SummarizeMmaTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV, W = Cfg::THREADS / 32, LK = 64;
  // K and V moments in one pass when their accumulators fit 64 registers.
  static constexpr bool kSplit = D + DV > 128;
  static constexpr int bytes = 2 * LK * (D + DV + 16);
  static_assert(bytes <= kSharedBudget, "summarize tiles exceed 48 KB of shared memory");
  // Output staging: each warp turns its 16 rows into row-contiguous stores, SC
  // columns at a time (the fragment layout stores 8 rows x 4 scattered floats
  // per instruction, which made the kernel L2-bound on partial sectors). Off
  // when it does not fit next to the key tiles (the direct stores remain).
  static constexpr int SC = 32;
  static constexpr int stageBytes = 4 * W * 16 * (SC + 1);
  static constexpr bool kStage = D % SC == 0 && DV % SC == 0 && bytes + stageBytes <= kSharedBudget;
  // Centroids in one pass: their fragments are loaded once per block.
  static constexpr bool kOnePass = Cfg::CQ <= 16 * W;
};

/// Rows rowBase .. rowBase + 15 (those < CQ) of one output part: fragment
/// columns (8 per accumulator tile) times inv of the row, written from col0 of
/// each row through this warp's staging tile st (16 x (SC + 1) floats), one
/// row of SC contiguous floats per store instruction.
template <int NC, int SC, long long ROW>
__device__ __forceinline__ void storeRowsStaged(const float (&acc)[NC][4], const float (&inv)[2], float *st,
                                                float *out, int rowBase, int rows, int col0, int lane) {
  constexpr int PER = SC / 8; // accumulator tiles per staged chunk
  static_assert(NC % PER == 0, "output part not a multiple of the staging width");
  const int g = lane / 4, t4 = lane % 4;
#pragma unroll
  for (int q = 0; q < NC / PER; ++q) {
    __syncwarp(); // the previous chunk is read
#pragma unroll
    for (int cc = 0; cc < PER; ++cc)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        float *d = st + (g + 8 * rr) * (SC + 1) + 8 * cc + 2 * t4;
        d[0] = acc[PER * q + cc][2 * rr] * inv[rr];
        d[1] = acc[PER * q + cc][2 * rr + 1] * inv[rr];
      }
    __syncwarp();
    for (int r = 0; r < rows; ++r)
      out[(long long)(rowBase + r) * ROW + col0 + SC * q + lane] = st[r * (SC + 1) + lane];
  }
}

/// One 16-byte group of 8 T from element off of base into shared dst (16-byte
/// aligned): by cp.async when the source is aligned, else through registers;
/// zeros when off < 0. cp.async copies are visible after cpAsyncWaitAll and a
/// barrier.
template <class T> __device__ __forceinline__ void copyRow8(T *dst, const void *base, long long off) {
  if (off < 0) {
    *reinterpret_cast<uint4 *>(dst) = make_uint4(0u, 0u, 0u, 0u);
    return;
  }
  const T *src = static_cast<const T *>(base) + off;
  if ((reinterpret_cast<unsigned long long>(src) & 15ull) == 0) {
    cpAsync16(dst, src);
    return;
  }
  float x[8];
  load8<T>(base, off, x);
  uint4 pk;
  pk.x = pack2<T>(x[0], x[1]);
  pk.y = pack2<T>(x[2], x[3]);
  pk.z = pack2<T>(x[4], x[5]);
  pk.w = pack2<T>(x[6], x[7]);
  *reinterpret_cast<uint4 *>(dst) = pk;
}

/// Keys (and values when DoV) l0 .. l0 + LK - 1 of the cluster (kperm is the
/// cluster's slice) into rows of D + 8 (DV + 8) T; rows from tk on are zeros.
/// Every index load, then every row copy, is issued before any is waited on:
/// element-wise loads followed by shared stores cost one round trip each.
template <class Cfg, bool DoV>
__device__ __forceinline__ void loadKeyChunk(const MuseParams &p, typename Cfg::T *ks, typename Cfg::T *vs,
                                             const int *kperm, int kh, int l0, int tk, int tid) {
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, THREADS = Cfg::THREADS, LK = SummarizeMmaTiles<Cfg>::LK;
  constexpr int DS = D / 8, VS = DV / 8, NK = cdiv(LK * DS, THREADS), NV = DoV ? cdiv(LK * VS, THREADS) : 1;
  // Values share the keys' row indices when their rows split alike (D == DV).
  constexpr bool kSame = DS == VS;
  int rk[NK], rv[kSame ? 1 : NV];
#pragma unroll
  for (int it = 0; it < NK; ++it) {
    const int e = tid + it * THREADS, r = e / DS;
    rk[it] = e < LK * DS && r < tk ? kperm[l0 + r] : -1;
  }
  if constexpr (DoV && !kSame) { // braces: a pragma between if and for detaches the loop
#pragma unroll
    for (int it = 0; it < NV; ++it) {
      const int e = tid + it * THREADS, r = e / VS;
      rv[it] = e < LK * VS && r < tk ? kperm[l0 + r] : -1;
    }
  }
#pragma unroll
  for (int it = 0; it < NK; ++it) {
    const int e = tid + it * THREADS, r = e / DS, sg = e - r * DS;
    if (e < LK * DS)
      copyRow8<T>(ks + r * (D + 8) + 8 * sg, p.k, rk[it] < 0 ? -1 : kRow(p, kh, rk[it]) + 8 * sg);
  }
  if constexpr (DoV) {
#pragma unroll
    for (int it = 0; it < NV; ++it) {
      const int e = tid + it * THREADS, r = e / VS, sg = e - r * VS;
      if (e < LK * VS) {
        const int row = kSame ? rk[it] : rv[it];
        copyRow8<T>(vs + r * (DV + 8) + 8 * sg, p.v, row < 0 ? -1 : vRow(p, kh, row) + 8 * sg);
      }
    }
  }
  cpAsyncCommit();
  cpAsyncWaitAll();
}

/// Moments of one output part for the 16 centroid rows of this warp: the
/// flash-attention pattern with the centroids as queries and cluster j's keys
/// as keys. S = qbar K^T on the tensor cores (qbar split into T hi + lo
/// parts, K exact in T), online max and sum per row in fp32, and
/// P [K | V] on the tensor cores with P rounded to T.
template <class Cfg, bool DoK, bool DoV>
__device__ __forceinline__ void summarizeRows(const MuseParams &p, const unsigned (&ahi)[Cfg::D / 16][4],
                                              const unsigned (&alo)[Cfg::D / 16][4], typename Cfg::T *ks,
                                              typename Cfg::T *vs, bool resident, int kcount,
                                              const int *kperm, int kh, bool active, float *out,
                                              int rowBase, float *stage) {
  using Tl = SummarizeMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, LK = Tl::LK, F = 1 + D + DV;
  constexpr int THREADS = Cfg::THREADS, DS = D / 8, VS = DV / 8;
  constexpr int KN = DoK ? D / 8 : 1, VN = DoV ? DV / 8 : 1;
  const int tid = threadIdx.x, lane = tid % 32, g = lane / 4, t4 = lane % 4;

  float m[2] = {-kInf(), -kInf()}, l[2] = {0.f, 0.f};
  float accK[KN][4] = {}, accV[VN][4] = {};
  for (int l0 = 0; l0 < kcount; l0 += LK) {
    const int tk = cmin(LK, kcount - l0);
    if (!resident) {
      __syncthreads(); // the previous chunk is no longer read
      loadKeyChunk<Cfg, DoV>(p, ks, vs, kperm, kh, l0, tk, tid);
      __syncthreads();
    }
    if (!active)
      continue;
    float s[LK / 8][4] = {};
#pragma unroll
    for (int kd = 0; kd < D / 16; ++kd)
#pragma unroll
      for (int nt = 0; nt < LK / 8; ++nt) {
        if (8 * nt >= tk)
          break; // columns past the chunk's keys are masked below (small clusters: most of them)
        const T *kr = ks + (8 * nt + g) * (D + 8) + 16 * kd + 2 * t4;
        const unsigned b0 = lds32(kr), b1 = lds32(kr + 8);
        mma16816<T>(s[nt], ahi[kd], b0, b1);
        mma16816<T>(s[nt], alo[kd], b0, b1);
      }
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < LK / 8; ++nt)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        if (8 * nt + 2 * t4 + (q & 1) >= tk)
          s[nt][q] = -kInf();
        mx[q >> 1] = fmaxf(mx[q >> 1], s[nt][q]);
      }
    float alpha[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
      mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
      alpha[rr] = expf(m[rr] - mx[rr]); // m = -inf at the first chunk: 0
      m[rr] = mx[rr];
      l[rr] *= alpha[rr];
    }
#pragma unroll
    for (int nt = 0; nt < LK / 8; ++nt)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        s[nt][q] = expf(s[nt][q] - m[q >> 1]);
        l[q >> 1] += s[nt][q];
      }
#pragma unroll
    for (int c = 0; c < KN; ++c)
#pragma unroll
      for (int q = 0; q < 4; ++q)
        accK[c][q] *= alpha[q >> 1];
#pragma unroll
    for (int c = 0; c < VN; ++c)
#pragma unroll
      for (int q = 0; q < 4; ++q)
        accV[c][q] *= alpha[q >> 1];
#pragma unroll
    for (int kk = 0; kk < LK / 16; ++kk) {
      if (16 * kk >= tk)
        break;
      const unsigned pa[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                              pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      if constexpr (DoK) {
#pragma unroll
        for (int np = 0; np < D / 16; ++np) {
          unsigned b[4];
          loadBTrans<D + 8>(b, ks, 16 * kk, 16 * np, lane);
          mma16816<T>(accK[2 * np], pa, b[0], b[1]);
          mma16816<T>(accK[2 * np + 1], pa, b[2], b[3]);
        }
      }
      if constexpr (DoV) {
#pragma unroll
        for (int np = 0; np < DV / 16; ++np) {
          unsigned b[4];
          loadBTrans<DV + 8>(b, vs, 16 * kk, 16 * np, lane);
          mma16816<T>(accV[2 * np], pa, b[0], b[1]);
          mma16816<T>(accV[2 * np + 1], pa, b[2], b[3]);
        }
      }
    }
  }
  if (!active)
    return;
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 1);
    l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 2);
  }
  if constexpr (Tl::kStage) {
    const float inv[2] = {1.f / l[0], 1.f / l[1]};
    const int rows = cmin(16, CQ - rowBase);
    if (DoK && t4 == 0) { // braces: a pragma between if and for detaches the loop
#pragma unroll
      for (int rr = 0; rr < 2; ++rr)
        if (g + 8 * rr < rows)
          out[(long long)(rowBase + g + 8 * rr) * CK * F] = m[rr] + logf(l[rr]);
    }
    if constexpr (DoK)
      storeRowsStaged<KN, Tl::SC, (long long)CK * F>(accK, inv, stage, out, rowBase, rows, 1, lane);
    if constexpr (DoV)
      storeRowsStaged<VN, Tl::SC, (long long)CK * F>(accV, inv, stage, out, rowBase, rows, 1 + D, lane);
    return;
  }
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int i = rowBase + g + 8 * rr;
    if (i >= CQ)
      continue;
    float *o = out + (long long)i * CK * F;
    const float inv = 1.f / l[rr];
    if (DoK && t4 == 0)
      o[0] = m[rr] + logf(l[rr]);
    if constexpr (DoK) {
#pragma unroll
      for (int c = 0; c < KN; ++c) {
        o[1 + 8 * c + 2 * t4] = accK[c][2 * rr] * inv;
        o[1 + 8 * c + 2 * t4 + 1] = accK[c][2 * rr + 1] * inv;
      }
    }
    if constexpr (DoV) {
#pragma unroll
      for (int c = 0; c < VN; ++c) {
        o[1 + D + 8 * c + 2 * t4] = accV[c][2 * rr] * inv;
        o[1 + D + 8 * c + 2 * t4 + 1] = accV[c][2 * rr + 1] * inv;
      }
    }
  }
}

/// 16-bit path. Grid (any x, B*H), block THREADS: block x takes the key
/// clusters x*per .. (x+1)*per - 1, per = ceil(CK / gridDim.x) (the launch
/// gives small clusters several per block, so that the centroid fragments and
/// the block's start are paid once for them);
/// every warp takes 16 centroids per pass, so one pass covers 16 * THREADS / 32
/// of them.
template <class Cfg> __device__ void summarizeMma(const MuseParams &p) {
  using Tl = SummarizeMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, THREADS = Cfg::THREADS;
  constexpr int LK = Tl::LK, F = 1 + D + DV, W = Tl::W;
  __shared__ __align__(16) T ks[LK * (D + 8)];
  __shared__ __align__(16) T vs[LK * (DV + 8)];
  __shared__ float stageAll[Tl::kStage ? W * 16 * (Tl::SC + 1) : 1];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const int bh = blockIdx.y;
  if ((int)blockIdx.x * cdiv(CK, (int)gridDim.x) >= CK)
    return; // the launch covers M / 128 blocks, more than CK for long sequences
  const HeadIndex hi(p, bh);
  const int *koff = p.k_offsets + (long long)hi.kh * (CK + 1);
  const int *kpermHead = p.k_perm + (long long)hi.kh * p.M;
  float *stage = Tl::kStage ? stageAll + warp * 16 * (Tl::SC + 1) : nullptr;

  // A fragments of centroid rows rowBase.. (hi + lo split, zero rows past CQ).
  unsigned ahi[D / 16][4], alo[D / 16][4];
  auto loadCentroids = [&](int rowBase) {
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const int i = rowBase + g + 8 * rr;
      const float *c = p.q_centroids + ((long long)bh * CQ + (i < CQ ? i : 0)) * D;
#pragma unroll
      for (int kd = 0; kd < D / 16; ++kd)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int d = 16 * kd + 8 * hf + 2 * t4;
          const float x0 = i < CQ ? c[d] : 0.f, x1 = i < CQ ? c[d + 1] : 0.f;
          const T h0 = T(x0), h1 = T(x1);
          ahi[kd][rr + 2 * hf] = pack2<T>(toFloat(h0), toFloat(h1));
          alo[kd][rr + 2 * hf] = pack2<T>(x0 - toFloat(h0), x1 - toFloat(h1));
        }
    }
  };
  if constexpr (Tl::kOnePass)
    loadCentroids(16 * warp);

  // A run of consecutive clusters per block: the rows (i, j) of adjacent j are
  // adjacent in memory, so each block's writes form runs of whole lines.
  const int per = cdiv(CK, (int)gridDim.x), jEnd = cmin(CK, ((int)blockIdx.x + 1) * per);
  for (int j = blockIdx.x * per; j < jEnd; ++j) {
    const int kstart = koff[j], kcount = koff[j + 1] - kstart;
    const int *kperm = kpermHead + kstart;
    float *out = p.summaries + ((long long)bh * CQ * CK + j) * F; // + i*CK*F for pair i

    if (kcount == 0) {
      for (long long e = tid; e < (long long)CQ * F; e += THREADS) {
        const int i = (int)(e / F), f = (int)(e - (long long)i * F);
        out[(long long)i * CK * F + f] = f == 0 ? -kInf() : 0.f;
      }
      continue;
    }
    const bool resident = kcount <= LK;
    if (resident) {
      __syncthreads(); // the previous cluster's keys are no longer read
      loadKeyChunk<Cfg, true>(p, ks, vs, kperm, hi.kh, 0, kcount, tid);
      __syncthreads();
    }

    for (int i0 = 0; i0 < CQ; i0 += 16 * W) {
      const int rowBase = i0 + 16 * warp;
      const bool active = rowBase < CQ; // uniform per warp; inactive warps still load
      if constexpr (!Tl::kOnePass)
        loadCentroids(rowBase);
      if constexpr (Tl::kSplit) {
        summarizeRows<Cfg, true, false>(p, ahi, alo, ks, vs, resident, kcount, kperm, hi.kh, active, out, rowBase,
                                        stage);
        summarizeRows<Cfg, false, true>(p, ahi, alo, ks, vs, resident, kcount, kperm, hi.kh, active, out, rowBase,
                                        stage);
      } else {
        summarizeRows<Cfg, true, true>(p, ahi, alo, ks, vs, resident, kcount, kperm, hi.kh, active, out, rowBase,
                                       stage);
      }
    }
  }
}

/// Grid (any x, B*H), block THREADS: key clusters split over blockIdx.x.
template <class Cfg> __device__ void summarize(const MuseParams &p) {
  if constexpr (TensorCoreType<typename Cfg::T>::value)
    summarizeMma<Cfg>(p);
  else
    summarizeExact<Cfg>(p);
}

} // namespace muse

#endif // MUSE_TEMPLATES_SUMMARIZE_CUH
