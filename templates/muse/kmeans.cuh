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

/// fp32 path. Grid (ceil(n/256), heads): one thread per point; the Ceff
/// centroids pass through shared memory in tiles, read as broadcasts.
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
  const long long i = (long long)blockIdx.x * kKMeansThreads + threadIdx.x;
  const bool live = i < n;

  float x[D];
  {
    const long long r = sv.row(head, live ? i : 0);
#pragma unroll
    for (int d = 0; d < D; ++d)
      x[d] = live ? sv.at(r, d) : 0.f;
  }

  const float4 *cent = reinterpret_cast<const float4 *>(sv.centroids() + (long long)head * C * D);
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
    return;
  sv.assign()[(long long)head * n + i] = bestC;
  float *sum = sv.sums() + ((long long)head * C + bestC) * D;
#pragma unroll
  for (int d = 0; d < D; ++d)
    atomicAdd(sum + d, x[d]);
  atomicAdd(sv.counts() + (long long)head * C + bestC, 1);
}

/// 16-bit path. Grid (ceil(n/256), heads), block 256: each warp takes 32
/// points. Distances ||c||^2 - 2 s (q . c) (s = scale for queries, 1 for
/// keys) come from tensor-core products of the unscaled points (exact in T)
/// with the centroids split into T hi + T lo parts (about 16 significant
/// bits); ties keep the lowest index. When the C x D member sums fit next to
/// the centroid tiles in shared memory, the block's 256 points are summed
/// there (shared atomics) and each touched cluster costs one global add per
/// component per block: 256 points of 64 clusters then need C*D global
/// atomics instead of 256*D. Otherwise each point's sums are added by its
/// warp with coalesced global atomics (32 consecutive components per request).
template <class Cfg, Side S> __device__ void kmeansAssignMma(const MuseParams &p) {
  using V = SideView<Cfg, S>;
  using T = typename Cfg::T;
  constexpr int C = V::C, D = Cfg::D, TC = D > 64 ? 32 : 64, KD = D / 16; // TC: no spills at D = 128
  constexpr int kTileBytes = 2 * TC * (D + 8) * (int)sizeof(T) + 4 * TC;
  constexpr bool kBlockSums = kTileBytes + 4 * (C * D + C) <= kSharedBudget;
  __shared__ __align__(16) T chi[TC][D + 8];
  __shared__ __align__(16) T clo[TC][D + 8];
  __shared__ float cn[TC];
  __shared__ float bsum[kBlockSums ? C * D : 1]; // this block's member sums
  __shared__ int bcount[kBlockSums ? C : 1];

  V sv(p);
  const int head = blockIdx.y, tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int n = sv.count();
  const int ceff = n < C ? n : C;
  const float sc = S == Side::Query ? p.scale : 1.f;
  const long long base = (long long)blockIdx.x * kKMeansThreads + 32 * warp;

  float best[2][2];
  int bestC[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      best[mt][rr] = kInf();
      bestC[mt][rr] = 0;
    }
  if constexpr (kBlockSums) {
    for (int e = tid; e < C * D; e += kKMeansThreads)
      bsum[e] = 0.f;
    for (int c = tid; c < C; c += kKMeansThreads)
      bcount[c] = 0;
  }
  const float *cent = sv.centroids() + (long long)head * C * D;
  for (int c0 = 0; c0 < ceff; c0 += TC) {
    __syncthreads(); // the previous centroid tile is no longer read
    for (int e = tid; e < TC * D; e += kKMeansThreads) {
      const int c = e / D, d = e - c * D;
      const float v = c0 + c < ceff ? cent[(long long)(c0 + c) * D + d] : 0.f;
      const T h = T(v);
      chi[c][d] = h;
      clo[c][d] = T(v - toFloat(h));
    }
    for (int c = tid; c < TC; c += kKMeansThreads) {
      float s = 0.f;
      if (c0 + c < ceff)
        for (int d = 0; d < D; ++d) {
          const float v = cent[(long long)(c0 + c) * D + d];
          s = fmaf(v, v, s);
        }
      cn[c] = s;
    }
    __syncthreads();
    // Per k step, both m-tiles' A fragments (re-read from L1 per centroid
    // tile) and each B fragment loaded once for both. The k loop stays rolled:
    // unrolled, the compiler keeps every fragment of the tile live (130-230
    // registers, one 256-thread block per SM).
    float acc[2][TC / 8][4] = {};
    const T *rows[2][2];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const long long pt = base + 16 * mt + g + 8 * rr;
        rows[mt][rr] = pt < n ? static_cast<const T *>(S == Side::Query ? p.q : p.k) + sv.row(head, pt) : nullptr;
      }
#pragma unroll 1
    for (int kd = 0; kd < KD; ++kd) {
      unsigned a[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
          const T *row = rows[mt][rr];
          a[mt][rr] = row ? ldPair<T>(row + 16 * kd + 2 * t4) : 0u;
          a[mt][2 + rr] = row ? ldPair<T>(row + 16 * kd + 8 + 2 * t4) : 0u;
        }
#pragma unroll
      for (int nt = 0; nt < TC / 8; ++nt) {
        const unsigned bh0 = lds32(&chi[8 * nt + g][16 * kd + 2 * t4]);
        const unsigned bh1 = lds32(&chi[8 * nt + g][16 * kd + 8 + 2 * t4]);
        const unsigned bl0 = lds32(&clo[8 * nt + g][16 * kd + 2 * t4]);
        const unsigned bl1 = lds32(&clo[8 * nt + g][16 * kd + 8 + 2 * t4]);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma16816<T>(acc[mt][nt], a[mt], bh0, bh1);
          mma16816<T>(acc[mt][nt], a[mt], bl0, bl1);
        }
      }
    }
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < TC / 8; ++nt)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int c = 8 * nt + 2 * t4 + (q & 1);
          if (c0 + c < ceff) {
            const float dist = fmaf(-2.f * sc, acc[mt][nt][q], cn[c]);
            if (dist < best[mt][q >> 1]) { // ascending c per thread: ties keep the lowest
              best[mt][q >> 1] = dist;
              bestC[mt][q >> 1] = c0 + c;
            }
          }
        }
  }
  // Quad reduction: the four lanes of a row hold disjoint centroid columns.
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr)
#pragma unroll
      for (int off = 1; off < 4; off <<= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best[mt][rr], off);
        const int oc = __shfl_xor_sync(0xffffffffu, bestC[mt][rr], off);
        if (ob < best[mt][rr] || (ob == best[mt][rr] && oc < bestC[mt][rr])) {
          best[mt][rr] = ob;
          bestC[mt][rr] = oc;
        }
      }
  if constexpr (kBlockSums) {
    // Every lane of a quad knows its two rows' clusters; lane t4 adds the
    // components it held as A fragments (16 kd + 2 t4 + {0, 1, 8, 9}).
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const long long pt = base + 16 * mt + g + 8 * rr;
        if (pt >= n)
          continue;
        const int c = bestC[mt][rr];
        const long long r = sv.row(head, pt);
#pragma unroll
        for (int kd = 0; kd < KD; ++kd)
#pragma unroll
          for (int h = 0; h < 4; ++h) {
            const int d = 16 * kd + 2 * t4 + (h & 1) + 8 * (h >> 1);
            atomicAdd(&bsum[c * D + d], sv.at(r, d));
          }
        if (t4 == 0) {
          sv.assign()[(long long)head * n + pt] = c;
          atomicAdd(&bcount[c], 1);
        }
      }
    __syncthreads();
    float *sums = sv.sums() + (long long)head * C * D;
    for (int e = tid; e < C * D; e += kKMeansThreads)
      if (bcount[e / D] > 0)
        atomicAdd(sums + e, bsum[e]);
    for (int c = tid; c < C; c += kKMeansThreads)
      if (bcount[c] > 0)
        atomicAdd(sv.counts() + (long long)head * C + c, bcount[c]);
    return;
  }
  // Point 16 mt + 8 rr + g of the warp lives in lane 4 g; the warp adds one
  // point at a time (not unrolled: registers stay with the products above).
  const int mine[4] = {bestC[0][0], bestC[0][1], bestC[1][0], bestC[1][1]};
#pragma unroll 1
  for (int pt = 0; pt < 32; ++pt) {
    const int sel = pt / 8, gg = pt % 8;
    const int held = sel == 0 ? mine[0] : sel == 1 ? mine[1] : sel == 2 ? mine[2] : mine[3];
    const int c = __shfl_sync(0xffffffffu, held, 4 * gg);
    const long long at = base + pt;
    if (at >= n)
      break; // uniform over the warp; later points are past the end too
    const long long r = sv.row(head, at);
    float *sum = sv.sums() + ((long long)head * C + c) * D;
    for (int d = lane; d < D; d += 32)
      atomicAdd(sum + d, sv.at(r, d));
    if (lane == 0) {
      sv.assign()[(long long)head * n + at] = c;
      atomicAdd(sv.counts() + (long long)head * C + c, 1);
    }
  }
}

/// Grid (ceil(n/256), heads), block 256: nearest centroid (ties to the lowest
/// index) into S_assign, member sums and counts accumulated atomically.
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
