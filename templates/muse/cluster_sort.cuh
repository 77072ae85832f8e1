//===- cluster_sort.cuh - Counting sort of points by cluster --------------===//
//
// One block of 1024 threads per head: counts from the final assignment,
// offsets (exclusive scan, C+1 entries) and a stable permutation (ascending
// point index inside each cluster), so that every later stage walks a
// cluster's members in a fixed order and the results are deterministic.
//
// W warps each own a contiguous segment of the points. Pass 1: every warp
// counts its segment per cluster (its own row of shared counters, no
// atomics). Scan: cluster a starts at offset(a) and, inside it, segment w
// after segments 0..w-1, so each row becomes that warp's write cursors. Pass 2:
// every warp scatters its segment in 32-point steps (lanes of equal cluster
// rank by lane = point order). No block barrier inside either pass.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_CLUSTER_SORT_CUH
#define MUSE_TEMPLATES_CLUSTER_SORT_CUH

#include "muse/common.cuh"

namespace muse {

constexpr int kSortThreads = 1024;

/// Grid (1, heads), block 1024.
template <class Cfg, Side S> __device__ void cluster_sort(const MuseParams &p) {
  using V = SideView<Cfg, S>;
  constexpr int C = V::C;
  constexpr int kWarps = kSortThreads / 32;
  static_assert(C <= kSortThreads, "cluster_sort scans at most 1024 clusters");
  // Segments: as many as the per-warp cursor rows allow in 40 KB (32 at C <= 320).
  constexpr int W = cmin(kWarps, floorPow2((40 * 1024) / (4 * C)));
  constexpr int kStep = 4; // 32-point windows whose assignments are loaded together
  __shared__ int cur[W][C];
  __shared__ int warpTotal[kWarps];

  V sv(p);
  const int head = blockIdx.y;
  const int n = sv.count();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int *assign = sv.assign() + (long long)head * n;
  const int seg = cdiv(cdiv(n, W), 32) * 32; // points a segment, whole windows
  const int lo = warp * seg, hi = cmin(n, lo + seg);
  const unsigned lowerLanes = (1u << lane) - 1u;

  for (int e = tid; e < W * C; e += kSortThreads)
    (&cur[0][0])[e] = 0;
  __syncthreads();

  // Pass 1: per-segment counts (the leader of each equal-cluster lane group adds).
  if (warp < W)
    for (int base = lo; base < hi; base += 32 * kStep) {
      int a[kStep];
#pragma unroll
      for (int s = 0; s < kStep; ++s) {
        const int i = base + 32 * s + lane;
        a[s] = i < hi ? assign[i] : -1;
      }
#pragma unroll
      for (int s = 0; s < kStep; ++s) {
        const unsigned same = __match_any_sync(0xffffffffu, a[s]);
        if (a[s] >= 0 && (same & lowerLanes) == 0)
          cur[warp][a[s]] += __popc(same);
        __syncwarp();
      }
    }
  __syncthreads();

  // Counts, exclusive scan over clusters (one cluster per thread).
  int cnt = 0;
  if (tid < C)
    for (int w = 0; w < W; ++w)
      cnt += cur[w][tid];
  int incl = cnt;
#pragma unroll
  for (int s = 1; s < 32; s <<= 1) {
    const int t = __shfl_up_sync(0xffffffffu, incl, s);
    if (lane >= s)
      incl += t;
  }
  if (lane == 31)
    warpTotal[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int w = warpTotal[lane];
#pragma unroll
    for (int s = 1; s < 32; s <<= 1) {
      const int t = __shfl_up_sync(0xffffffffu, w, s);
      if (lane >= s)
        w += t;
    }
    warpTotal[lane] = w; // inclusive over warps
  }
  __syncthreads();
  const int excl = incl - cnt + (warp > 0 ? warpTotal[warp - 1] : 0);
  int *offsets = sv.offsets() + (long long)head * (C + 1);
  if (tid < C) {
    offsets[tid] = excl;
    sv.counts()[(long long)head * C + tid] = cnt;
    int run = excl; // segment w's members of this cluster follow segments 0..w-1
    for (int w = 0; w < W; ++w) {
      const int t = cur[w][tid];
      cur[w][tid] = run;
      run += t;
    }
  }
  if (tid == 0)
    offsets[C] = n;
  __syncthreads();

  // Pass 2: stable scatter of each segment through its own cursors.
  int *perm = sv.perm() + (long long)head * n;
  if (warp < W)
    for (int base = lo; base < hi; base += 32 * kStep) {
      int a[kStep];
#pragma unroll
      for (int s = 0; s < kStep; ++s) {
        const int i = base + 32 * s + lane;
        a[s] = i < hi ? assign[i] : -1;
      }
#pragma unroll
      for (int s = 0; s < kStep; ++s) {
        const unsigned same = __match_any_sync(0xffffffffu, a[s]);
        const int rank = __popc(same & lowerLanes);
        if (a[s] >= 0) {
          perm[cur[warp][a[s]] + rank] = base + 32 * s + lane;
          __syncwarp(same); // every lane of the group has read the cursor
          if (rank == 0)
            cur[warp][a[s]] += __popc(same);
        }
        __syncwarp();
      }
    }
}

} // namespace muse

#endif // MUSE_TEMPLATES_CLUSTER_SORT_CUH
