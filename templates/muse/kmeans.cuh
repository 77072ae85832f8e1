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

/// Grid (ceil(n/256), heads): one thread per point; the Ceff centroids pass
/// through shared memory in tiles, read as broadcasts.
template <class Cfg, Side S> __device__ void kmeans_assign(const MuseParams &p) {
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
