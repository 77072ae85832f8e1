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
// 16-bit inputs take a tensor-core path (farFieldMma): each warp owns 16
// queries, S = R Kbar^T (near: X K^T) and O += P V on mma.sync with fp32
// accumulators and the softmax in registers; f32 inputs keep the exact fp32
// path.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_FAR_FIELD_CUH
#define MUSE_TEMPLATES_FAR_FIELD_CUH

#include "muse/common.cuh"
#include "muse/online_softmax.cuh"
#include "muse/smem_gemm.cuh"

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

/// Tiles of the tensor-core path: JT key clusters per shared tile (a multiple
/// of 16, the k step of P V). A tile row is first the cluster's F fp32
/// summary floats, copied by cp.async (LDS floats a row: 16-byte aligned
/// rows), then, converted in place, kbar hi | kbar lo | vbar hi | vbar lo in T
/// (LDT elements a row); near keys and values use the hi slots.
template <class Cfg> struct FarFieldMmaTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV, F = 1 + D + DV;
  static constexpr int JT = cmin(D + DV > 128 ? 32 : 64, cdiv(Cfg::CK, 16) * 16);
  static constexpr int E1 = Cfg::NEAR > 0 ? Cfg::NEAR : 1;
  static constexpr int LDS = cdiv(F, 4) * 4, LDT = 2 * LDS;
  static constexpr int bytes = 4 * JT * LDS + 4 * (JT + D + E1) + Cfg::CK;
  static constexpr bool usable = TensorCoreType<typename Cfg::T>::value && D % 16 == 0 &&
                                 DV % 16 == 0 && Cfg::THREADS >= 32 && bytes <= kSharedBudget;
};

/// One tile of logits s (JT columns, -inf where bias is -inf) folded into the
/// running max m, this lane's partial sums l and the output fragments o, with
/// O += P V from V stored row-major in shared memory (hi, plus lo when LO).
/// The weights are split into T hi + lo for the product.
template <class T, int JT, int DV, bool LO, int LD = DV + 8>
__device__ __forceinline__ void foldTileMma(float (&s)[JT / 8][4], const float *bias, float (&m)[2],
                                            float (&l)[2], float (&o)[DV / 8][4], const T *vh,
                                            const T *vl, int lane) {
  constexpr int NJ = JT / 8, NV = DV / 8;
  const int t4 = lane % 4;
  float mx[2] = {m[0], m[1]};
#pragma unroll
  for (int nt = 0; nt < NJ; ++nt)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float b = bias[8 * nt + 2 * t4 + (q & 1)];
      s[nt][q] = b == -kInf() ? -kInf() : b + s[nt][q];
      mx[q >> 1] = fmaxf(mx[q >> 1], s[nt][q]);
    }
  float alpha[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
    mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
    alpha[rr] = mx[rr] == -kInf() ? 1.f : expf(m[rr] - mx[rr]);
    m[rr] = mx[rr];
    l[rr] *= alpha[rr];
  }
#pragma unroll
  for (int nt = 0; nt < NJ; ++nt)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float w = expf(s[nt][q] - safeMax(m[q >> 1]));
      s[nt][q] = w;
      l[q >> 1] += w;
    }
#pragma unroll
  for (int nv = 0; nv < NV; ++nv)
#pragma unroll
    for (int q = 0; q < 4; ++q)
      o[nv][q] *= alpha[q >> 1];
#pragma unroll
  for (int kk = 0; kk < JT / 16; ++kk) {
    unsigned phi[4], plo[4];
    split2<T>(s[2 * kk][0], s[2 * kk][1], phi[0], plo[0]);
    split2<T>(s[2 * kk][2], s[2 * kk][3], phi[1], plo[1]);
    split2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1], phi[2], plo[2]);
    split2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3], phi[3], plo[3]);
#pragma unroll
    for (int nv2 = 0; nv2 < NV / 2; ++nv2) {
      unsigned bh[4];
      loadBTrans<LD>(bh, vh, 16 * kk, 16 * nv2, lane);
      mma16816<T>(o[2 * nv2], phi, bh[0], bh[1]);
      mma16816<T>(o[2 * nv2 + 1], phi, bh[2], bh[3]);
      mma16816<T>(o[2 * nv2], plo, bh[0], bh[1]);
      mma16816<T>(o[2 * nv2 + 1], plo, bh[2], bh[3]);
      if constexpr (LO) {
        unsigned bl[4];
        loadBTrans<LD>(bl, vl, 16 * kk, 16 * nv2, lane);
        mma16816<T>(o[2 * nv2], phi, bl[0], bl[1]);
        mma16816<T>(o[2 * nv2 + 1], phi, bl[2], bl[3]);
      }
    }
  }
}

/// far_field<Cfg, true> on a served view: where served row n of this view
/// head lands in the call (segment a of batch b: position a·seg_stride +
/// seg_qbase + n), its o row in merge_o and its run_lse / lse entry.
struct MergeRows {
  const MuseParams &p;
  int segA, segB, h;
  __device__ MergeRows(const MuseParams &params, const HeadIndex &hi)
      : p(params), segA(hi.b % params.seg_count), segB(hi.b / params.seg_count), h(hi.h) {}
  __device__ long long position(int n) const { return (long long)segA * p.seg_stride + p.seg_qbase + n; }
  __device__ long long lseAt(int n) const { return ((long long)segB * p.H + h) * p.seq_len + position(n); }
  __device__ float *oRow(int n) const {
    return p.merge_o + segB * p.merge_o_sb + h * p.merge_o_sh + position(n) * p.merge_o_sn;
  }
};

/// The rows this quad will merge into (o and run_lse, written by the window a
/// whole kernel ago, so in DRAM) fetched into L2 before the step's products,
/// so that the epilogue's reads wait for L2, not DRAM.
template <int DV>
__device__ __forceinline__ void mergePrefetch(const MuseParams &p, const HeadIndex &hi, const bool (&live)[2],
                                              const int (&qi)[2], int t4) {
  const MergeRows rows(p, hi);
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    if (!live[rr])
      continue;
    const float *orow = rows.oRow(qi[rr]);
    // The quad's lanes: a quarter of the row each, a prefetch per 32-byte sector.
#pragma unroll
    for (int s = 0; s < DV / 32; ++s)
      prefetchL2(orow + (DV / 4) * t4 + 8 * s);
    if (t4 == 0)
      prefetchL2(p.run_lse + rows.lseAt(qi[rr]));
  }
}

/// 16-bit path. Grid (CQ, B*H), block THREADS: the block's warps take 16
/// queries each per step. Near key clusters are masked out of the far tiles
/// and their members (exact in T) pass through the same shared tiles, JT keys
/// at a time, with logits x_n . k_l from x split into hi + lo. Logits s_nj = lnmass_ij + r_n . kbar_ij
/// from split operands (r hi*kbar hi + r hi*kbar lo + r lo*kbar hi, about
/// 16-bit operands, fp32 sums), weights and values split the same way for
/// P V; the online softmax runs on the accumulator fragments (the four lanes
/// of a quad share a row). Empty key clusters (lnmass = -inf) are stored as
/// zero columns so that their summaries never reach an MMA.
template <class Cfg, bool kMerge> __device__ void farFieldMma(const MuseParams &p) {
  using Tl = FarFieldMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, THREADS = Cfg::THREADS;
  constexpr int E = Cfg::NEAR, JT = Tl::JT, W = THREADS / 32, KD = D / 16, NJ = JT / 8, NV = DV / 8;
  constexpr int F = 1 + D + DV, LDS = Tl::LDS, LDT = Tl::LDT;
  constexpr bool kOneTile = CK <= JT && E == 0; // summaries loaded once for all query steps
  __shared__ __align__(16) float tile[JT * LDS];
  T *const tileT = reinterpret_cast<T *>(tile);
  T *const khi = tileT, *const klo = tileT + D, *const vhi = tileT + 2 * D, *const vlo = tileT + 2 * D + DV;
  __shared__ float bias[JT];
  __shared__ float cen[D];
  __shared__ int nearList[Tl::E1];
  __shared__ unsigned char isNear[CK];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
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

  // Summaries of key clusters j0 .. j0 + JT - 1 into the tile as T hi + lo
  // pairs, zero where bias is -inf (near, empty or past CK). The summaries of
  // (i, j0..) are contiguous: every 4-byte copy of the tile is in flight at
  // once (a register round trip per batch of loads made the load of the
  // tile, not the MMAs, the block's time when clusters are small). Then each
  // warp converts whole rows in place: all of a row is read before any of it
  // is overwritten. The caller's barrier makes the tile visible.
  auto loadTile = [&](int j0) {
    const int rows = cmin(JT, CK - j0);
    const float *src = sum_i + (long long)j0 * F;
#pragma unroll 1
    for (int e = tid; e < rows * F; e += THREADS) {
      const int t = e / F;
      cpAsync4(tile + t * LDS + (e - t * F), src + e);
    }
    cpAsyncCommit();
    cpAsyncWaitAll();
    __syncthreads();
    constexpr int KP = cdiv(D / 2, 32), VP = cdiv(DV / 2, 32); // column pairs per lane
#pragma unroll 1
    for (int t = warp; t < JT; t += W) {
      const float *row = tile + t * LDS;
      const bool live = j0 + t < CK && !isNear[j0 + t];
      const float b = live ? row[0] : -kInf(); // lnmass; -inf for an empty cluster too
      const bool zero = b == -kInf();
      float ka[KP][2], va[VP][2];
#pragma unroll
      for (int u = 0; u < KP; ++u) {
        const int c = 2 * (lane + 32 * u);
        ka[u][0] = c < D && !zero ? row[1 + c] : 0.f;
        ka[u][1] = c < D && !zero ? row[2 + c] : 0.f;
      }
#pragma unroll
      for (int u = 0; u < VP; ++u) {
        const int c = 2 * (lane + 32 * u);
        va[u][0] = c < DV && !zero ? row[1 + D + c] : 0.f;
        va[u][1] = c < DV && !zero ? row[2 + D + c] : 0.f;
      }
      __syncwarp(); // the whole row is read
      T *rowT = tileT + t * LDT;
#pragma unroll
      for (int u = 0; u < KP; ++u) {
        const int c = 2 * (lane + 32 * u);
        if (c < D)
          split2<T>(ka[u][0], ka[u][1], *reinterpret_cast<unsigned *>(rowT + c),
                    *reinterpret_cast<unsigned *>(rowT + D + c));
      }
#pragma unroll
      for (int u = 0; u < VP; ++u) {
        const int c = 2 * (lane + 32 * u);
        if (c < DV)
          split2<T>(va[u][0], va[u][1], *reinterpret_cast<unsigned *>(rowT + 2 * D + c),
                    *reinterpret_cast<unsigned *>(rowT + 2 * D + DV + c));
      }
      if (lane == 0)
        bias[t] = b;
    }
  };

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
    __syncthreads();
  }
  if constexpr (kOneTile)
    loadTile(0);
  __syncthreads();

  for (int n0 = 0; n0 < qcount; n0 += 16 * W) {
    int qi[2];
    bool live[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const int row = n0 + 16 * warp + g + 8 * rr;
      live[rr] = row < qcount;
      qi[rr] = live[rr] ? qperm[row] : 0;
    }
    if constexpr (kMerge)
      mergePrefetch<DV>(p, hi, live, qi, t4);
    // A fragments of r = x - qbar_i (a_{rr + 2h}: row g + 8 rr, columns 16 kd + 2 t4 + 8 h).
    unsigned ahi[KD][4], alo[KD][4];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const T *qr = static_cast<const T *>(p.q) + qRow(p, hi.b, hi.h, qi[rr]);
#pragma unroll
      for (int kd = 0; kd < KD; ++kd)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int col = 16 * kd + 2 * t4 + 8 * h;
          float a = 0.f, b = 0.f;
          if (live[rr]) {
            const float2 v = unpack2<T>(ldPair<T>(qr + col));
            a = scaled(p, v.x) - cen[col];
            b = scaled(p, v.y) - cen[col + 1];
          }
          split2<T>(a, b, ahi[kd][rr + 2 * h], alo[kd][rr + 2 * h]);
        }
    }

    float m[2] = {-kInf(), -kInf()}, l[2] = {0.f, 0.f}; // l: this lane's columns only
    float o[NV][4] = {};
    for (int j0 = 0; j0 < CK; j0 += JT) {
      if constexpr (!kOneTile) {
        __syncthreads(); // every warp is done with the previous tile
        loadTile(j0);
        __syncthreads();
      }
      float s[NJ][4] = {};
#pragma unroll
      for (int kd = 0; kd < KD; ++kd)
#pragma unroll
        for (int nt = 0; nt < NJ; ++nt) {
          const int at = (8 * nt + g) * LDT + 16 * kd + 2 * t4;
          const unsigned bh0 = lds32(khi + at), bh1 = lds32(khi + at + 8);
          const unsigned bl0 = lds32(klo + at), bl1 = lds32(klo + at + 8);
          mma16816<T>(s[nt], ahi[kd], bh0, bh1);
          mma16816<T>(s[nt], ahi[kd], bl0, bl1);
          mma16816<T>(s[nt], alo[kd], bh0, bh1);
        }
      foldTileMma<T, JT, DV, true, LDT>(s, bias, m, l, o, vhi, vlo, lane);
    }

    // Near field: x_n . k_l for the members of each near cluster, exactly in T.
    if constexpr (E > 0) {
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const T *qr = static_cast<const T *>(p.q) + qRow(p, hi.b, hi.h, qi[rr]);
#pragma unroll
        for (int kd = 0; kd < KD; ++kd)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            float a = 0.f, b = 0.f;
            if (live[rr]) {
              const float2 v = unpack2<T>(ldPair<T>(qr + 16 * kd + 2 * t4 + 8 * h));
              a = scaled(p, v.x);
              b = scaled(p, v.y);
            }
            split2<T>(a, b, ahi[kd][rr + 2 * h], alo[kd][rr + 2 * h]);
          }
      }
      for (int e = 0; e < E; ++e) {
        const int j = nearList[e];
        if (j < 0)
          break; // -1 pads follow the chosen clusters
        const int kstart = koff[j], kcount = koff[j + 1] - kstart;
        for (int l0 = 0; l0 < kcount; l0 += JT) {
          const int tk = cmin(JT, kcount - l0);
          __syncthreads(); // every warp is done with the previous tile
          for (int t = tid; t < JT; t += THREADS)
            bias[t] = t < tk ? 0.f : -kInf();
          for (int e2 = tid; e2 < JT * (D / 8); e2 += THREADS) {
            const int t = e2 / (D / 8), sg = e2 - t * (D / 8);
            float x[8] = {};
            if (t < tk)
              load8<T>(p.k, kRow(p, hi.kh, kperm[kstart + l0 + t]) + 8 * sg, x);
            uint4 pk;
            pk.x = pack2<T>(x[0], x[1]);
            pk.y = pack2<T>(x[2], x[3]);
            pk.z = pack2<T>(x[4], x[5]);
            pk.w = pack2<T>(x[6], x[7]);
            *reinterpret_cast<uint4 *>(khi + t * LDT + 8 * sg) = pk;
          }
          for (int e2 = tid; e2 < JT * (DV / 8); e2 += THREADS) {
            const int t = e2 / (DV / 8), sg = e2 - t * (DV / 8);
            float x[8] = {};
            if (t < tk)
              load8<T>(p.v, vRow(p, hi.kh, kperm[kstart + l0 + t]) + 8 * sg, x);
            uint4 pk;
            pk.x = pack2<T>(x[0], x[1]);
            pk.y = pack2<T>(x[2], x[3]);
            pk.z = pack2<T>(x[4], x[5]);
            pk.w = pack2<T>(x[6], x[7]);
            *reinterpret_cast<uint4 *>(vhi + t * LDT + 8 * sg) = pk;
          }
          __syncthreads();
          float s[NJ][4] = {};
#pragma unroll
          for (int kd = 0; kd < KD; ++kd)
#pragma unroll
            for (int nt = 0; nt < NJ; ++nt) {
              const unsigned b0 = lds32(khi + (8 * nt + g) * LDT + 16 * kd + 2 * t4);
              const unsigned b1 = lds32(khi + (8 * nt + g) * LDT + 16 * kd + 8 + 2 * t4);
              mma16816<T>(s[nt], ahi[kd], b0, b1);
              mma16816<T>(s[nt], alo[kd], b0, b1);
            }
          foldTileMma<T, JT, DV, false, LDT>(s, bias, m, l, o, vhi, vhi, lane);
        }
      }
    }

    // kMerge: the row's lse so far (window and earlier levels), read by every
    // lane before the quads' first lanes rewrite it.
    float lseOld[2] = {-kInf(), -kInf()};
    if constexpr (kMerge) {
      const MergeRows rows(p, hi);
#pragma unroll
      for (int rr = 0; rr < 2; ++rr)
        if (live[rr])
          lseOld[rr] = p.run_lse[rows.lseAt(qi[rr])];
      __syncwarp();
    }
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 1);
      l[rr] += __shfl_xor_sync(0xffffffffu, l[rr], 2);
      if (!live[rr])
        continue;
      if constexpr (kMerge) {
        // causal_merge's update of this row, with the partial still in registers.
        const float lseP = m[rr] + logf(l[rr]);
        if (lseP == -kInf())
          continue;
        const float mx = fmaxf(lseOld[rr], lseP);
        const float wa = expf(lseOld[rr] - mx), wb = expf(lseP - mx), z = wa + wb;
        const MergeRows rows(p, hi);
        float *orow = rows.oRow(qi[rr]);
        // Every load of the row's old values before the first store (a store
        // between them would order each load behind it: a round trip each).
        const bool pairs = (reinterpret_cast<unsigned long long>(orow) & 7ull) == 0;
        float2 prev[NV];
#pragma unroll
        for (int nv = 0; nv < NV; ++nv)
          prev[nv] = pairs ? *reinterpret_cast<const float2 *>(orow + 8 * nv + 2 * t4)
                           : make_float2(orow[8 * nv + 2 * t4], orow[8 * nv + 2 * t4 + 1]);
#pragma unroll
        for (int nv = 0; nv < NV; ++nv) {
          const float x = (wa * prev[nv].x + wb * (o[nv][2 * rr] / l[rr])) / z;
          const float y = (wa * prev[nv].y + wb * (o[nv][2 * rr + 1] / l[rr])) / z;
          if (pairs) {
            *reinterpret_cast<float2 *>(orow + 8 * nv + 2 * t4) = make_float2(x, y);
          } else {
            orow[8 * nv + 2 * t4] = x;
            orow[8 * nv + 2 * t4 + 1] = y;
          }
        }
        if (t4 == 0) {
          const float total = mx + logf(z);
          const long long at = rows.lseAt(qi[rr]);
          p.run_lse[at] = total;
          if (p.merge_lse)
            p.merge_lse[at] = total;
        }
        continue;
      }
      if (Cfg::ORDER == 0 && p.out_o && !p.causal) {
        // The caller's o in T: this is the row's one writer (emit.cuh).
        const long long at = outORow(p, hi.b, hi.h, qi[rr]) + 2 * t4;
#pragma unroll
        for (int nv = 0; nv < NV; ++nv)
          storeOutPair<T>(p.out_o, at + 8 * nv, o[nv][2 * rr] / l[rr], o[nv][2 * rr + 1] / l[rr]);
      } else {
        float *orow = p.o + oRow(p, hi.b, hi.h, qi[rr]);
        // 8-byte stores where the row allows: a warp's store then fills whole
        // 32-byte sectors of 8 rows instead of half of each.
        const bool pairs = (reinterpret_cast<unsigned long long>(orow) & 7ull) == 0;
#pragma unroll
        for (int nv = 0; nv < NV; ++nv) {
          const float x = o[nv][2 * rr] / l[rr], y = o[nv][2 * rr + 1] / l[rr];
          if (pairs) {
            *reinterpret_cast<float2 *>(orow + 8 * nv + 2 * t4) = make_float2(x, y);
          } else {
            orow[8 * nv + 2 * t4] = x;
            orow[8 * nv + 2 * t4 + 1] = y;
          }
        }
      }
      if (t4 == 0) {
        const float lse = m[rr] + logf(l[rr]);
        const long long at = (long long)bh * p.N + qi[rr];
        p.row_lse[at] = lse;
        if (p.lse)
          p.lse[at] = lse;
      }
    }
  }
}

/// fp32 path. Grid (CQ, B*H), block THREADS.
template <class Cfg> __device__ void farFieldExact(const MuseParams &p) {
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

/// Grid (CQ, B*H), block THREADS. kMerge (causal order 0 on the tensor cores,
/// Outline.cpp): on a level's served view the far field merges its partial
/// into the call's o and run_lse itself, as causal_merge would (which the
/// plan then does not launch), instead of writing part_o and row_lse.
template <class Cfg, bool kMerge = false> __device__ void far_field(const MuseParams &p) {
  static_assert(!kMerge || (FarFieldMmaTiles<Cfg>::usable && Cfg::ORDER == 0),
                "the far field merges its partial itself only at order 0 on the tensor cores");
  if constexpr (FarFieldMmaTiles<Cfg>::usable)
    farFieldMma<Cfg, kMerge>(p);
  else
    farFieldExact<Cfg>(p);
}

} // namespace muse

#endif // MUSE_TEMPLATES_FAR_FIELD_CUH
