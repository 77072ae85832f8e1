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

/// 16-bit path. Grid (x, heads), block 256, any x: block b takes the 128-point
/// chunks b, b + x, ... of its head (the plan gives each block about 1024
/// points, so the per-block set-up below is paid once per eight chunks).
/// Per chunk the points are staged in shared memory by 16-byte loads (the
/// next chunk's loads are in flight while this one is computed); each warp
/// takes 16 points. Distances ||c||^2 - 2 s (q . c) (s = scale for queries, 1
/// for keys) come from tensor-core products of the unscaled points (exact in
/// T) with the centroids split into T hi + T lo parts (about 16 significant
/// bits); ties keep the lowest index. The centroid tiles (split, with their
/// squared norms) stay resident for the whole block when C fits one tile.
/// Member sums: when C x D is small enough for registers, they are a product
/// too, sums += onehot(assign)^T . X per chunk (exact 0/1 and exact T operands,
/// fp32 accumulators), and each block adds each non-empty cluster's sums to
/// the global accumulators once; otherwise each point's sums are added by its
/// warp with coalesced global atomics (32 consecutive components per request).
template <class Cfg, Side S> __device__ void kmeansAssignMma(const MuseParams &p) {
  using V = SideView<Cfg, S>;
  using T = typename Cfg::T;
  constexpr int C = V::C, D = Cfg::D, KD = D / 16, LD = D + 8; // LD: conflict-free ldmatrix rows
  constexpr int kChunk = 128;                                   // 8 warps x 16 points
  // Centroids per tile: 64 at D = 64 (one tile at the usual C = 64); 16 at
  // D = 128 so that the point chunk and the tiles fit 48 KB.
  constexpr int TC = cmin(D > 64 ? 16 : 64, cdiv(C, 8) * 8);
  constexpr bool kResident = C <= TC;
  constexpr int L = D / 4; // float4 lanes per centroid row (16 or 32: divides a warp)
  // Member-sum product: 16-cluster x 16-component units, spread over 8 warps.
  constexpr int MT = cdiv(C, 16), NP = D / 16, UNITS = MT * NP, UPW = cdiv(UNITS, 8);
  constexpr bool kMmaSums = UPW <= 4; // <= 32 accumulators a thread
  constexpr int kPieces = kChunk * D / 8 / kKMeansThreads; // 16-byte pieces a thread per chunk
  static_assert(kPieces * 8 * kKMeansThreads == kChunk * D, "chunk must split into 16-byte pieces");
  __shared__ __align__(16) T xs[kChunk][LD];
  __shared__ __align__(16) T chi[TC][LD];
  __shared__ __align__(16) T clo[TC][LD];
  __shared__ float cn[TC];
  __shared__ int sAssign[kChunk];
  __shared__ int bcount[kMmaSums ? C : 1];

  V sv(p);
  const int head = blockIdx.y, tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t4 = lane % 4;
  const int n = sv.count();
  const int ceff = n < C ? n : C;
  const int chunks = cdiv(n, kChunk);
  if ((int)blockIdx.x >= chunks)
    return; // uniform over the block
  const float sc = S == Side::Query ? p.scale : 1.f;
  const T *src = static_cast<const T *>(S == Side::Query ? p.q : p.k);

  // Centroids [c0, c0 + TC) as hi/lo rows and their squared norms; the L
  // lanes of one centroid row sum its norm with a shuffle.
  auto loadTile = [&](int c0) {
    const float4 *cent = reinterpret_cast<const float4 *>(sv.centroids() + ((long long)head * C + c0) * D);
#pragma unroll 1
    for (int it = 0; it < cdiv(TC * L, kKMeansThreads); ++it) {
      const int e = it * kKMeansThreads + tid;
      const int c = e / L, d4 = e % L;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (e < TC * L && c0 + c < ceff)
        v = cent[e];
      unsigned h0, l0, h1, l1;
      split2<T>(v.x, v.y, h0, l0);
      split2<T>(v.z, v.w, h1, l1);
      float s = fmaf(v.w, v.w, fmaf(v.z, v.z, fmaf(v.y, v.y, v.x * v.x)));
#pragma unroll
      for (int off = L / 2; off > 0; off >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, off);
      if (e < TC * L) {
        *reinterpret_cast<uint2 *>(&chi[c][4 * d4]) = make_uint2(h0, h1);
        *reinterpret_cast<uint2 *>(&clo[c][4 * d4]) = make_uint2(l0, l1);
        if (d4 == 0)
          cn[c] = s;
      }
    }
  };

  uint4 pre[kPieces];
  auto fetch = [&](int ch) {
#pragma unroll
    for (int i = 0; i < kPieces; ++i) {
      const int e = i * kKMeansThreads + tid, r = e / (D / 8), c8 = e % (D / 8);
      const long long pt = (long long)ch * kChunk + r;
      pre[i] = pt < n ? loadRaw8<T>(src, sv.row(head, pt) + 8 * c8) : make_uint4(0u, 0u, 0u, 0u);
    }
  };

  if constexpr (kMmaSums)
    for (int c = tid; c < C; c += kKMeansThreads)
      bcount[c] = 0;
  if constexpr (kResident)
    loadTile(0); // visible after the first chunk's barriers
  float sacc[kMmaSums ? UPW : 1][2][4] = {};

  fetch(blockIdx.x);
  for (int ch = blockIdx.x; ch < chunks; ch += gridDim.x) {
    __syncthreads(); // the previous chunk's xs and sAssign are no longer read
#pragma unroll
    for (int i = 0; i < kPieces; ++i) {
      const int e = i * kKMeansThreads + tid, r = e / (D / 8), c8 = e % (D / 8);
      *reinterpret_cast<uint4 *>(&xs[r][8 * c8]) = pre[i];
    }
    __syncthreads();
    if (ch + (int)gridDim.x < chunks)
      fetch(ch + gridDim.x); // in flight during this chunk's products

    float best[2] = {kInf(), kInf()};
    int bestC[2] = {0, 0};
    for (int c0 = 0; c0 < ceff; c0 += TC) {
      if constexpr (!kResident) {
        __syncthreads(); // the previous centroid tile is no longer read
        loadTile(c0);
        __syncthreads();
      }
      float acc[TC / 8][4] = {};
#pragma unroll 1
      for (int kd = 0; kd < KD; ++kd) {
        unsigned a[4];
        loadA<LD>(a, &xs[0][0], 16 * warp, 16 * kd, lane);
#pragma unroll
        for (int nt = 0; nt < TC / 8; ++nt) {
          const unsigned bh0 = lds32(&chi[8 * nt + g][16 * kd + 2 * t4]);
          const unsigned bh1 = lds32(&chi[8 * nt + g][16 * kd + 8 + 2 * t4]);
          const unsigned bl0 = lds32(&clo[8 * nt + g][16 * kd + 2 * t4]);
          const unsigned bl1 = lds32(&clo[8 * nt + g][16 * kd + 8 + 2 * t4]);
          mma16816<T>(acc[nt], a, bh0, bh1);
          mma16816<T>(acc[nt], a, bl0, bl1);
        }
      }
#pragma unroll
      for (int nt = 0; nt < TC / 8; ++nt)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int c = 8 * nt + 2 * t4 + (q & 1);
          if (c0 + c < ceff) {
            const float dist = fmaf(-2.f * sc, acc[nt][q], cn[c]);
            if (dist < best[q >> 1]) { // ascending c per thread: ties keep the lowest
              best[q >> 1] = dist;
              bestC[q >> 1] = c0 + c;
            }
          }
        }
    }
    // Quad reduction: the four lanes of a row hold disjoint centroid columns.
#pragma unroll
    for (int rr = 0; rr < 2; ++rr)
#pragma unroll
      for (int off = 1; off < 4; off <<= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best[rr], off);
        const int oc = __shfl_xor_sync(0xffffffffu, bestC[rr], off);
        if (ob < best[rr] || (ob == best[rr] && oc < bestC[rr])) {
          best[rr] = ob;
          bestC[rr] = oc;
        }
      }
    if (t4 == 0) { // braces: a pragma between if and for may detach the loop
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const int r = 16 * warp + g + 8 * rr;
        const long long pt = (long long)ch * kChunk + r;
        sAssign[r] = pt < n ? bestC[rr] : -1; // -1 matches no cluster below
        if (pt < n) {
          sv.assign()[(long long)head * n + pt] = bestC[rr];
          if constexpr (kMmaSums)
            atomicAdd(&bcount[bestC[rr]], 1);
        }
      }
    }
    __syncthreads(); // sAssign is complete
    if constexpr (kMmaSums) {
#pragma unroll 1
      for (int ks = 0; ks < kChunk / 16; ++ks) {
        const int k0 = 16 * ks;
        const int s0 = sAssign[k0 + 2 * t4], s1 = sAssign[k0 + 2 * t4 + 1];
        const int s2 = sAssign[k0 + 2 * t4 + 8], s3 = sAssign[k0 + 2 * t4 + 9];
#pragma unroll
        for (int u = 0; u < UPW; ++u) {
          const int unit = warp * UPW + u;
          if (unit >= UNITS)
            break; // uniform over the warp
          const int m0 = 16 * (unit / NP), np = unit % NP;
          const int r0 = m0 + g, r1 = m0 + g + 8;
          unsigned a[4], b[4];
          a[0] = pack2<T>(s0 == r0 ? 1.f : 0.f, s1 == r0 ? 1.f : 0.f);
          a[1] = pack2<T>(s0 == r1 ? 1.f : 0.f, s1 == r1 ? 1.f : 0.f);
          a[2] = pack2<T>(s2 == r0 ? 1.f : 0.f, s3 == r0 ? 1.f : 0.f);
          a[3] = pack2<T>(s2 == r1 ? 1.f : 0.f, s3 == r1 ? 1.f : 0.f);
          loadBTrans<LD>(b, &xs[0][0], k0, 16 * np, lane);
          mma16816<T>(sacc[u][0], a, b[0], b[1]);
          mma16816<T>(sacc[u][1], a, b[2], b[3]);
        }
      }
    } else {
      // Warp w adds its 16 points one at a time, 32 consecutive components a request.
#pragma unroll 1
      for (int r = 16 * warp; r < 16 * warp + 16; ++r) {
        const int c = sAssign[r];
        if (c < 0)
          break; // past the end: so are the warp's later points
        float *sum = sv.sums() + ((long long)head * C + c) * D;
        for (int d = lane; d < D; d += 32) {
          const float x = toFloat(xs[r][d]);
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
