//===- cluster_sort.cuh - Counting sort of points by cluster --------------===//
//
// One block of 1024 threads per head: counts from the final assignment,
// offsets (exclusive scan, C+1 entries) and a stable permutation (ascending
// point index inside each cluster), so that every later stage walks a
// cluster's members in a fixed order and the results are deterministic.
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
  __shared__ int cursor[C];
  __shared__ int warpTotal[kWarps];

  V sv(p);
  const int head = blockIdx.y;
  const int n = sv.count();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int *assign = sv.assign() + (long long)head * n;

  for (int c = tid; c < C; c += kSortThreads)
    cursor[c] = 0;
  __syncthreads();
  for (int i = tid; i < n; i += kSortThreads)
    atomicAdd(&cursor[assign[i]], 1); // integer: order does not matter
  __syncthreads();

  // Exclusive scan of the counts, one cluster per thread.
  const int cnt = tid < C ? cursor[tid] : 0;
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
    cursor[tid] = excl;
  }
  if (tid == 0)
    offsets[C] = n;
  __syncthreads();

  // Stable scatter: chunks of 1024 points; warps claim their slots in warp
  // order, and lanes with equal clusters rank by lane (= point) order.
  int *perm = sv.perm() + (long long)head * n;
  const unsigned lowerLanes = (1u << lane) - 1u;
  for (int base = 0; base < n; base += kSortThreads) {
    const int i = base + tid;
    const int a = i < n ? assign[i] : -1;
    const unsigned same = __match_any_sync(0xffffffffu, a);
    const int rank = __popc(same & lowerLanes);
    const bool leader = rank == 0;
    const int activeWarps = cmin(kWarps, cdiv(n - base, 32));
    for (int w = 0; w < activeWarps; ++w) {
      if (warp == w) {
        const int slot = a >= 0 ? cursor[a] + rank : 0;
        __syncwarp();
        if (a >= 0) {
          perm[slot] = i;
          if (leader)
            cursor[a] += __popc(same);
        }
      }
      __syncthreads();
    }
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_CLUSTER_SORT_CUH
