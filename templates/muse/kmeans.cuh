//===- kmeans.cuh - Lloyd k-means of ALGORITHM.md §2 on queries or keys ---===//
//
// Launch order per side: kmeans_init, then (kmeans_assign, kmeans_update) x
// ITERS. Ceff = min(C, n) clusters start at x_{floor(c*n/Ceff)}; clusters
// >= Ceff get centroid 0 and are never chosen by kmeans_assign, so they stay
// empty. The float atomics of the accumulation make the last bits of the
// centroids order-dependent; consumers are handed the resulting partition.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_KMEANS_CUH
#define MUSE_TEMPLATES_KMEANS_CUH

#include "muse/common.cuh"
#include "muse/smem_gemm.cuh"

namespace muse {

/// Block size of kmeans_init and kmeans_assign (templates/README.md).
constexpr int kKMeansThreads = 256;

/// Grid (ceil(C*D/256), heads): one thread per centroid component.
template <class Cfg, Side S> __device__ void kmeans_init(const MuseParams &p) {
  using V = SideView<Cfg, S>;
  constexpr int C = V::C, D = Cfg::D;
  V sv(p);
  const int head = blockIdx.y;
  const int e = blockIdx.x * kKMeansThreads + threadIdx.x;
  if (e >= C * D)
    return;
  const int c = e / D, d = e - c * D;
  const int n = sv.count();
  const int ceff = n < C ? n : C;
  float val = 0.f;
  if (c < ceff)
    val = sv.at(sv.row(head, (long long)c * n / ceff), d);
  const long long base = (long long)head * C * D;
  sv.centroids()[base + e] = val;
  sv.sums()[base + e] = 0.f;
  if (d == 0)
    sv.counts()[(long long)head * C + c] = 0;
}

/// fp32 path. Grid (x, heads), any x: block b takes the 256-point chunks
/// b, b + x, ... of its head, one thread per point; the Ceff centroids pass
/// through shared memory in tiles, read as broadcasts.
template <class Cfg, Side S> __device__ void kmeansAssignExact(const MuseParams &p) {
  using V = SideView<Cfg, S>;
  constexpr int C = V::C, D = Cfg::D;
  // Centroids per shared tile: 32 KB, and no more than C.
  constexpr int TC = cmin(floorPow2(C), (32 * 1024) / (D * 4));
  static_assert(D % 4 == 0, "head dim must be a multiple of 4");
  __shared__ float4 tile[TC * D / 4];

  V sv(p);
  const int head = blockIdx.y;
  const int n = sv.count();
  const int ceff = n < C ? n : C;
  const float4 *cent = reinterpret_cast<const float4 *>(sv.centroids() + (long long)head * C * D);
  for (long long chunk = blockIdx.x; chunk * kKMeansThreads < n; chunk += gridDim.x) {
    const long long i = chunk * kKMeansThreads + threadIdx.x;
    const bool live = i < n;

    float x[D];
    {
      const long long r = sv.row(head, live ? i : 0);
#pragma unroll
      for (int d = 0; d < D; ++d)
        x[d] = live ? sv.at(r, d) : 0.f;
    }

    float best = kInf();
    int bestC = 0;
    for (int c0 = 0; c0 < ceff; c0 += TC) {
      const int tc = cmin(TC, ceff - c0);
      __syncthreads(); // the previous tile is no longer read
      for (int e = threadIdx.x; e < tc * (D / 4); e += kKMeansThreads)
        tile[e] = cent[c0 * (D / 4) + e];
      __syncthreads();
      for (int c = 0; c < tc; ++c) {
        float dist = 0.f;
#pragma unroll
        for (int d4 = 0; d4 < D / 4; ++d4) {
          const float4 t = tile[c * (D / 4) + d4];
          float u = x[4 * d4] - t.x;
          dist = fmaf(u, u, dist);
          u = x[4 * d4 + 1] - t.y;
          dist = fmaf(u, u, dist);
          u = x[4 * d4 + 2] - t.z;
          dist = fmaf(u, u, dist);
          u = x[4 * d4 + 3] - t.w;
          dist = fmaf(u, u, dist);
        }
        if (dist < best) { // strict: ties keep the lowest index
          best = dist;
          bestC = c0 + c;
        }
      }
    }
    if (!live)
      continue; // no barrier follows in this chunk; the loop bound is uniform
    sv.assign()[(long long)head * n + i] = bestC;
    float *sum = sv.sums() + ((long long)head * C + bestC) * D;
#pragma unroll
    for (int d = 0; d < D; ++d)
      atomicAdd(sum + d, x[d]);
    atomicAdd(sv.counts() + (long long)head * C + bestC, 1);
  }
}

/// Eight consecutive T elements (16 bytes) at element offset `off`: one
/// 16-byte load when aligned, element loads otherwise (any strides stay legal).
template <class T> __device__ __forceinline__ uint4 loadRaw8(const T *base, long long off) {
  const T *ptr = base + off;
  if ((reinterpret_cast<unsigned long long>(ptr) & 15ull) == 0)
    return *reinterpret_cast<const uint4 *>(ptr);
  uint4 u;
  unsigned short *h = reinterpret_cast<unsigned short *>(&u);
#pragma unroll
  for (int c = 0; c < 8; ++c)
    h[c] = reinterpret_cast<const unsigned short *>(ptr)[c];
  return u;
}

/// Warp layout of the 16-bit assign kernel (8 warps, kChunk points a chunk):
/// the warps form a WM x WN grid over (point m-tiles, centroid n-tiles), so
/// that each warp keeps the B fragments of its NTW n-tiles (8 centroids each,
/// split hi + lo) in registers and streams the A fragments of its points from
/// shared memory. Centroids come in passes of CB; one pass (kResident) when C
/// fits, which is the case up to 64 clusters.
template <int C, int D> struct KMeansMmaTiles {
  static constexpr int kChunk = D <= 64 ? 128 : 64; // two staged chunks fit 48 KB
  static constexpr int KD = D / 16, MT = kChunk / 16, NTC = cdiv(C, 8);
  // One n-tile a warp (B registers: 4 KD per n-tile): two at D = 64 would
  // halve the per-point reductions but need > 128 registers (1 block per SM).
  static constexpr int NTW_MAX = 1;
  static constexpr int WN = cmin(8, cmax(8 / MT, floorPow2(2 * cdiv(NTC, NTW_MAX) - 1))); // >= 1 m-tile a warp
  static constexpr int WM = 8 / WN, MTW = MT / WM;
  static constexpr int NTW = cmin(cdiv(NTC, WN), NTW_MAX);
  static constexpr int CB = 8 * NTW * WN, PASSES = cdiv(C, CB);
  static constexpr bool kResident = PASSES == 1;
  static constexpr int MG = cmin(MTW, 2); // m-tiles whose products are in flight together
  static_assert(WM * WN == 8 && MTW * WM == MT, "the warp grid must cover the chunk");
};

/// 16-bit path. Grid (x, heads), block 256, any x: block b takes the
/// kChunk-point chunks b, b + x, ... of its head (the plan gives each block
/// about 1024 points, so the per-block set-up is paid once per several chunks).
/// Chunks are staged in shared memory by cp.async into two buffers, the next
/// chunk's copies in flight while this one is computed. Distances
/// ||c||^2 - 2 s (q . c) (s = scale for queries, 1 for keys) come from
/// tensor-core products of the unscaled points (exact in T) with the
/// centroids split into T hi + T lo parts (about 16 significant bits); each
/// warp holds its centroids' fragments in registers (loaded once per block
/// when C fits one pass) and reduces its candidates per point; the warps'
/// candidates meet in shared memory, ascending in centroid index, so ties keep
/// the lowest index. Member sums: when C x D is small enough for registers,
/// they are a product too, sums += onehot(assign)^T . X per chunk (exact 0/1
/// and exact T operands, fp32 accumulators), and each block adds each
/// non-empty cluster's sums to the global accumulators once; otherwise each
/// point's sums are added by a warp with coalesced global atomics.
///
/// kServed (queries of a causal level's served view, causal_levels.cuh): the
/// same distances, but to the nearest NON-EMPTY centroid of the segment's
/// finished k-means (count 0: +inf), into p.served; rows of the view past the
/// sequence (the last segment's R may be clipped) are not read and get -1; no
/// member sums, no counts.
template <class Cfg, Side S, bool kServed = false> __device__ void kmeansAssignMma(const MuseParams &p) {
  using V = SideView<Cfg, S>;
  using T = typename Cfg::T;
  constexpr int C = V::C, D = Cfg::D, LD = D + 8; // LD: conflict-free ldmatrix rows
  using Tl = KMeansMmaTiles<C, D>;
  constexpr int kChunk = Tl::kChunk, KD = Tl::KD, WN = Tl::WN, MTW = Tl::MTW, NTW = Tl::NTW;
  constexpr int CB = Tl::CB, MG = Tl::MG;
  // Member-sum product: 16-cluster x 16-component units, spread over 8 warps.
  constexpr int MTS = cdiv(C, 16), NP = D / 16, UNITS = MTS * NP, UPW = cdiv(UNITS, 8);
  constexpr bool kMmaSums = !kServed && UPW <= 4; // <= 32 accumulators a thread
  static_assert(!kServed || S == Side::Query, "served views hold queries");
  constexpr int kPieces = kChunk * D / 8 / kKMeansThreads; // 16-byte pieces a thread per chunk
  static_assert(kPieces * 8 * kKMeansThreads == kChunk * D, "chunk must split into 16-byte pieces");
  __shared__ __align__(16) T xs[2][kChunk][LD];
  __shared__ float bestD[WN][kChunk];
  __shared__ int bestI[WN][kChunk];
  __shared__ __align__(8) int sAssign[kChunk];
  __shared__ int bcount[kMmaSums ? C : 1];
  static_assert(sizeof(xs) + sizeof(bestD) + sizeof(bestI) + sizeof(sAssign) + sizeof(bcount) <= kSharedBudget,
                "k-means assign tiles exceed the static shared-memory budget");

  V sv(p);
  const int head = blockIdx.y, tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t4 = lane % 4, wn = warp % WN, wm = warp / WN;
  const int n = sv.count();
  const int ceff = n < C ? n : C;
  const int chunks = cdiv(n, kChunk);
  // Points that exist: all n, except in a served view whose R runs past the sequence.
  int nLive = n;
  if constexpr (kServed) {
    const int vb = head / p.H, a = vb % p.seg_count;
    const long long first = (long long)a * p.seg_stride + p.seg_qbase;
    const long long left = (long long)p.seq_len - first;
    nLive = left <= 0 ? 0 : left < n ? (int)left : n;
  }
  if ((int)blockIdx.x >= chunks)
    return; // uniform over the block
  const float sc = S == Side::Query ? p.scale : 1.f;
  // Rows of a head are affine in the point index (plain and segment views
  // alike, common.cuh), so one base and one stride address every point.
  const T *src = static_cast<const T *>(S == Side::Query ? p.q : p.k) + sv.row(head, 0);
  const long long rs = sv.row(head, 1) - sv.row(head, 0);
  const bool async = (reinterpret_cast<unsigned long long>(src) & 15ull) == 0 && rs % 8 == 0;

  // Copies of chunk ch into buffer b: cp.async when rows are 16-byte aligned,
  // element loads otherwise; rows past n are zero (the sums product reads them).
  auto stage = [&](int ch, int b) {
    const T *base = src + (long long)ch * kChunk * rs;
#pragma unroll
    for (int i = 0; i < kPieces; ++i) {
      const int e = i * kKMeansThreads + tid, r = e / (D / 8), c8 = e % (D / 8);
      T *dst = &xs[b][r][8 * c8];
      if (ch * kChunk + r >= nLive)
        *reinterpret_cast<uint4 *>(dst) = make_uint4(0u, 0u, 0u, 0u);
      else if (async)
        cpAsync16(dst, base + r * rs + 8 * c8);
      else
        *reinterpret_cast<uint4 *>(dst) = loadRaw8<T>(base, r * rs + 8 * c8);
    }
    cpAsyncCommit();
  };

  // This warp's centroids of the pass starting at c0: column g of each of its
  // n-tiles as hi/lo B fragments, and the squared norms of the two columns
  // 2 t4, 2 t4 + 1 its accumulators hold (+inf past Ceff: never chosen).
  unsigned bh[NTW][KD][2], bl[NTW][KD][2];
  float cn[NTW][2];
  auto loadCentroids = [&](int c0) {
    const float *cent = sv.centroids() + (long long)head * C * D;
    float2 v[NTW][KD][2];
#pragma unroll
    for (int j = 0; j < NTW; ++j) {
      const int c = c0 + 8 * (wn * NTW + j) + g;
#pragma unroll
      for (int kd = 0; kd < KD; ++kd)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          v[j][kd][h] = c < ceff ? *reinterpret_cast<const float2 *>(cent + (long long)c * D + 16 * kd + 8 * h + 2 * t4)
                                 : make_float2(0.f, 0.f);
    }
#pragma unroll
    for (int j = 0; j < NTW; ++j) {
      float s = 0.f;
#pragma unroll
      for (int kd = 0; kd < KD; ++kd)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          split2<T>(v[j][kd][h].x, v[j][kd][h].y, bh[j][kd][h], bl[j][kd][h]);
          s = fmaf(v[j][kd][h].x, v[j][kd][h].x, fmaf(v[j][kd][h].y, v[j][kd][h].y, s));
        }
      s += __shfl_xor_sync(0xffffffffu, s, 1);
      s += __shfl_xor_sync(0xffffffffu, s, 2);
      const int c = c0 + 8 * (wn * NTW + j) + g;
      if (c >= ceff || (kServed && sv.counts()[(long long)head * C + c] == 0))
        s = kInf(); // never chosen (served: an empty centroid serves nobody)
      cn[j][0] = __shfl_sync(0xffffffffu, s, 8 * t4);     // column 2 t4 lives in lanes 4 (2 t4) ..
      cn[j][1] = __shfl_sync(0xffffffffu, s, 8 * t4 + 4); // column 2 t4 + 1 in lanes 4 (2 t4 + 1) ..
    }
  };

  if constexpr (kMmaSums)
    for (int c = tid; c < C; c += kKMeansThreads)
      bcount[c] = 0;
  stage(blockIdx.x, 0);
  if constexpr (Tl::kResident)
    loadCentroids(0);
  float sacc[kMmaSums ? UPW : 1][2][4] = {};

  int buf = 0;
  for (int ch = blockIdx.x; ch < chunks; ch += gridDim.x, buf ^= 1) {
    cpAsyncWaitAll(); // this chunk's copies (the only group in flight)
    __syncthreads();  // ... visible to all; the previous chunk is no longer read
    if (ch + (int)gridDim.x < chunks)
      stage(ch + gridDim.x, buf ^ 1);
    const T *xb = &xs[buf][0][0];

#pragma unroll 1
    for (int c0 = 0; c0 < ceff; c0 += CB) {
      if constexpr (!Tl::kResident)
        loadCentroids(c0);
#pragma unroll 1
      for (int m0 = 0; m0 < MTW; m0 += MG) {
        // hi and lo products in separate accumulators: independent MMA chains.
        float ah[MG][NTW][4] = {}, al[MG][NTW][4] = {};
#pragma unroll
        for (int kd = 0; kd < KD; ++kd)
#pragma unroll
          for (int i = 0; i < MG; ++i) {
            unsigned a[4];
            loadA<LD>(a, xb, 16 * (wm * MTW + m0 + i), 16 * kd, lane);
#pragma unroll
            for (int j = 0; j < NTW; ++j) {
              mma16816<T>(ah[i][j], a, bh[j][kd][0], bh[j][kd][1]);
              mma16816<T>(al[i][j], a, bl[j][kd][0], bl[j][kd][1]);
            }
          }
        // Per thread: the closer of its two columns for rows g, g + 8 of each
        // of the MG m-tiles (ascending column: ties keep the lowest).
        float cd[MG][2];
        int cc[MG][2];
#pragma unroll
        for (int i = 0; i < MG; ++i)
#pragma unroll
          for (int rr = 0; rr < 2; ++rr) {
            cd[i][rr] = kInf();
            cc[i][rr] = 0;
#pragma unroll
            for (int j = 0; j < NTW; ++j)
#pragma unroll
              for (int q = 0; q < 2; ++q) {
                const float dist = fmaf(-2.f * sc, ah[i][j][2 * rr + q] + al[i][j][2 * rr + q], cn[j][q]);
                if (dist < cd[i][rr]) {
                  cd[i][rr] = dist;
                  cc[i][rr] = c0 + 8 * (wn * NTW + j) + 2 * t4 + q;
                }
              }
          }
        // The four lanes of a row hold disjoint columns. Transposing reduction:
        // across lanes t4 ^ 1 each lane keeps row g + 8 (t4 & 1) and hands the
        // other over; across t4 ^ 2 (when MG = 2) it keeps m-tile (t4 >> 1) & 1.
        // The merge is branch-free and breaks exact ties by the lower index.
        auto merge = [](float &d, int &c, float od, int oc) {
          const bool take = (od < d) | ((od == d) & (oc < c));
          d = take ? od : d;
          c = take ? oc : c;
        };
        const bool b1 = t4 & 1, b2 = t4 & 2;
        float keepD[MG];
        int keepC[MG];
#pragma unroll
        for (int i = 0; i < MG; ++i) {
          keepD[i] = b1 ? cd[i][1] : cd[i][0];
          keepC[i] = b1 ? cc[i][1] : cc[i][0];
          const float od = __shfl_xor_sync(0xffffffffu, b1 ? cd[i][0] : cd[i][1], 1);
          const int oc = __shfl_xor_sync(0xffffffffu, b1 ? cc[i][0] : cc[i][1], 1);
          merge(keepD[i], keepC[i], od, oc);
        }
        float best;
        int bestC, mt;
        if constexpr (MG == 2) {
          best = b2 ? keepD[1] : keepD[0];
          bestC = b2 ? keepC[1] : keepC[0];
          const float od = __shfl_xor_sync(0xffffffffu, b2 ? keepD[0] : keepD[1], 2);
          const int oc = __shfl_xor_sync(0xffffffffu, b2 ? keepC[0] : keepC[1], 2);
          merge(best, bestC, od, oc);
          mt = wm * MTW + m0 + (b2 ? 1 : 0);
        } else {
          best = keepD[0];
          bestC = keepC[0];
          merge(best, bestC, __shfl_xor_sync(0xffffffffu, best, 2), __shfl_xor_sync(0xffffffffu, bestC, 2));
          mt = wm * MTW + m0;
        }
        if (MG == 2 || !b2) {
          const int r = 16 * mt + g + (b1 ? 8 : 0);
          // Earlier passes hold lower indices: only a strictly closer one replaces them.
          if (c0 == 0 || best < bestD[wn][r]) {
            bestD[wn][r] = best;
            bestI[wn][r] = bestC;
          }
        }
      }
    }
    __syncthreads(); // every warp's candidates are in bestD / bestI
    if (tid < kChunk) {
      float best = bestD[0][tid];
      int bestC = bestI[0][tid];
#pragma unroll
      for (int w = 1; w < WN; ++w) // ascending centroid ranges: strict keeps the lowest
        if (bestD[w][tid] < best) {
          best = bestD[w][tid];
          bestC = bestI[w][tid];
        }
      const long long pt = (long long)ch * kChunk + tid;
      if (kServed) {
        if (pt < n)
          p.served[(long long)head * n + pt] = pt < nLive ? bestC : -1;
      } else {
        sAssign[tid] = pt < n ? bestC : -1; // -1 matches no cluster below
        if (pt < n) {
          sv.assign()[(long long)head * n + pt] = bestC;
          if constexpr (kMmaSums)
            atomicAdd(&bcount[bestC], 1);
        }
      }
    }
    __syncthreads(); // sAssign is complete
    if constexpr (kMmaSums) { // never in served mode: the assignment is all a served view needs
      // One-hot A fragment of cluster rows m0 + g, m0 + g + 8 and the slab's points.
      auto onehot = [&](unsigned (&a)[4], int m0, int2 lo, int2 hi) {
        const int r0 = m0 + g, r1 = m0 + g + 8;
        a[0] = pack2<T>(lo.x == r0 ? 1.f : 0.f, lo.y == r0 ? 1.f : 0.f);
        a[1] = pack2<T>(lo.x == r1 ? 1.f : 0.f, lo.y == r1 ? 1.f : 0.f);
        a[2] = pack2<T>(hi.x == r0 ? 1.f : 0.f, hi.y == r0 ? 1.f : 0.f);
        a[3] = pack2<T>(hi.x == r1 ? 1.f : 0.f, hi.y == r1 ? 1.f : 0.f);
      };
      // When NP is a multiple of UPW a warp's units share their cluster rows,
      // so their one-hot fragment is built once per slab.
      constexpr bool kShared = NP % UPW == 0;
#pragma unroll 1
      for (int ks = 0; ks < kChunk / 16; ++ks) {
        const int k0 = 16 * ks;
        const int2 lo = *reinterpret_cast<const int2 *>(&sAssign[k0 + 2 * t4]);
        const int2 hi = *reinterpret_cast<const int2 *>(&sAssign[k0 + 2 * t4 + 8]);
        unsigned a[4];
        if constexpr (kShared)
          onehot(a, 16 * (warp * UPW / NP), lo, hi);
#pragma unroll
        for (int u = 0; u < UPW; ++u) {
          const int unit = warp * UPW + u;
          if (unit >= UNITS)
            break; // uniform over the warp
          const int m0 = 16 * (unit / NP), np = unit % NP;
          if constexpr (!kShared)
            onehot(a, m0, lo, hi);
          unsigned b[4];
          loadBTrans<LD>(b, xb, k0, 16 * np, lane);
          mma16816<T>(sacc[u][0], a, b[0], b[1]);
          mma16816<T>(sacc[u][1], a, b[2], b[3]);
        }
      }
    } else if constexpr (!kServed) {
      // Warp w adds its kChunk / 8 points one at a time, 32 consecutive components a request.
      constexpr int PW = kChunk / 8;
#pragma unroll 1
      for (int r = PW * warp; r < PW * warp + PW; ++r) {
        const int c = sAssign[r];
        if (c < 0)
          break; // past the end: so are the warp's later points
        float *sum = sv.sums() + ((long long)head * C + c) * D;
        for (int d = lane; d < D; d += 32) {
          const float x = toFloat(xs[buf][r][d]);
          atomicAdd(sum + d, S == Side::Query ? scaled(p, x) : x);
        }
        if (lane == 0)
          atomicAdd(sv.counts() + (long long)head * C + c, 1);
      }
    }
  }
  if constexpr (kMmaSums) {
    __syncthreads(); // bcount is complete
    // Queries: the products summed unscaled q; the clustered points are s q.
    float *sums = sv.sums() + (long long)head * C * D;
#pragma unroll
    for (int u = 0; u < UPW; ++u) {
      const int unit = warp * UPW + u;
      if (unit >= UNITS)
        break;
      const int m0 = 16 * (unit / NP), np = unit % NP;
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int c = m0 + g + 8 * (q >> 1), d = 16 * np + 8 * h + 2 * t4 + (q & 1);
          if (c < C && bcount[c] > 0)
            atomicAdd(sums + (long long)c * D + d, sc * sacc[u][h][q]);
        }
    }
    for (int c = tid; c < C; c += kKMeansThreads)
      if (bcount[c] > 0)
        atomicAdd(sv.counts() + (long long)head * C + c, bcount[c]);
  }
}

/// Grid (x, heads), block 256, any x (the plan: ceil(n/1024)): nearest
/// centroid (ties to the lowest index) into S_assign, member sums and counts accumulated atomically.
template <class Cfg, Side S> __device__ void kmeans_assign(const MuseParams &p) {
  if constexpr (TensorCoreType<typename Cfg::T>::value)
    kmeansAssignMma<Cfg, S>(p);
  else
    kmeansAssignExact<Cfg, S>(p);
}

/// Grid (C, heads), block D: a non-empty centroid moves to its members' mean;
/// sums and count are zeroed for the next iteration.
template <class Cfg, Side S> __device__ void kmeans_update(const MuseParams &p) {
  using V = SideView<Cfg, S>;
  constexpr int C = V::C, D = Cfg::D;
  V sv(p);
  const int head = blockIdx.y, c = blockIdx.x, d = threadIdx.x;
  int *count = sv.counts() + (long long)head * C + c;
  const long long e = ((long long)head * C + c) * D + d;
  const int members = *count;
  if (members > 0)
    sv.centroids()[e] = sv.sums()[e] / (float)members;
  sv.sums()[e] = 0.f;
  __syncthreads(); // every thread has read the count
  if (d == 0)
    *count = 0;
}

} // namespace muse

#endif // MUSE_TEMPLATES_KMEANS_CUH
