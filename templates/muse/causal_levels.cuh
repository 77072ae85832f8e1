//===- causal_levels.cuh - Served queries, merge and partition export -----===//
//
// The per-level kernels of the causal far field that the acausal stages do
// not cover (ALGORITHM.md §4). At level ℓ, segment a has the keys and member
// queries L = blocks [a 2^{ℓ+1}, a 2^{ℓ+1} + 2^ℓ) and serves the queries
// R = blocks [a 2^{ℓ+1} + 2^ℓ + w - 1, (a+1) 2^{ℓ+1} + w - 1) (clipped to N).
// The acausal k-means, sort, summarize, select_near, far_field and dipole run
// on segment views (params.cuh); these kernels connect them:
//   served_assign  R's queries to the nearest NON-EMPTY L centroid (served view)
//   served_sort    the served queries grouped by cluster (q_offsets, q_perm)
//   causal_merge   the level's partial into o / run_lse by log-sum-exp weights
//   causal_export  the level's partitions in the reference layout (Types.h)
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_CAUSAL_LEVELS_CUH
#define MUSE_TEMPLATES_CAUSAL_LEVELS_CUH

#include "muse/common.cuh"
#include "muse/kmeans.cuh"

namespace muse {

/// Where query position t meets level ℓ: its serving segment a and its row
/// n inside that segment's R, or false when level ℓ does not serve t.
template <int S, int W>
__device__ __forceinline__ bool servedAt(int t, int level, int &a, int &n) {
  const int P = t / S - W + 1;
  if (P <= 0 || !((P >> level) & 1))
    return false;
  a = P >> (level + 1);
  n = t - ((a << (level + 1)) + (1 << level) + W - 1) * S;
  return true;
}

/// fp32 path. Grid (ceil(2^ℓ S / 256), view query heads), block 256, served
/// view: one thread a query, exact squared distances.
template <class Cfg> __device__ void servedAssignExact(const MuseParams &p) {
  constexpr int C = Cfg::CQ, D = Cfg::D;
  constexpr int TC = cmin(floorPow2(C), (16 * 1024) / (D * 4));
  __shared__ __align__(16) float tile[TC][D];
  __shared__ int tileCount[TC];

  const int bh = blockIdx.y; // view head (b*seg_count + a)*H + h
  const int vb = bh / p.H, h = bh - vb * p.H;
  const int a = vb % p.seg_count;
  const int n = blockIdx.x * 256 + threadIdx.x;
  const long long pos = (long long)a * p.seg_stride + p.seg_qbase + n;
  const bool live = n < p.N && pos < p.seq_len;
  const int ceff = cmin(C, p.N);

  // x stays in registers: every index below is a compile-time constant (a
  // partly unrolled d loop would put x in local memory, 10x slower).
  float x[D];
  {
    const long long r = qRow(p, vb, h, live ? n : 0);
#pragma unroll
    for (int d0 = 0; d0 < D; d0 += 8) {
      float v8[8];
      load8<typename Cfg::T>(p.q, r + d0, v8);
#pragma unroll
      for (int e = 0; e < 8; ++e)
        x[d0 + e] = live ? scaled(p, v8[e]) : 0.f;
    }
  }
  const float *cent = p.q_centroids + (long long)bh * C * D;
  const int *counts = p.q_counts + (long long)bh * C;
  float best = kInf();
  int bestC = -1;
  for (int c0 = 0; c0 < ceff; c0 += TC) {
    const int tc = cmin(TC, ceff - c0);
    __syncthreads();
    for (int e = threadIdx.x; e < tc * D; e += 256)
      tile[e / D][e % D] = cent[(long long)c0 * D + e];
    for (int c = threadIdx.x; c < tc; c += 256)
      tileCount[c] = counts[c0 + c];
    __syncthreads();
    for (int c = 0; c < tc; ++c) {
      if (tileCount[c] == 0)
        continue; // an empty centroid serves nobody
      float dist = 0.f;
      const float4 *row = reinterpret_cast<const float4 *>(tile[c]);
#pragma unroll
      for (int d4 = 0; d4 < D / 4; ++d4) { // the same sequential sum, 16-byte broadcasts
        const float4 cv = row[d4];
        float u = x[4 * d4] - cv.x;
        dist = fmaf(u, u, dist);
        u = x[4 * d4 + 1] - cv.y;
        dist = fmaf(u, u, dist);
        u = x[4 * d4 + 2] - cv.z;
        dist = fmaf(u, u, dist);
        u = x[4 * d4 + 3] - cv.w;
        dist = fmaf(u, u, dist);
      }
      if (bestC < 0 || dist < best) { // strict: ties keep the lowest index
        best = dist;
        bestC = c0 + c;
      }
    }
  }
  if (n < p.N)
    p.served[(long long)bh * p.N + n] = live ? bestC : -1;
}

/// Grid (x, view query heads), block 256, served view: R's queries to their
/// nearest non-empty centroid of L. 16-bit inputs take k-means' tensor-core
/// assign (any x; the plan gives about 1024 queries a block), f32 the exact
/// kernel above (x = ceil(2^ℓ S / 256)).
template <class Cfg> __device__ void served_assign(const MuseParams &p) {
  if constexpr (TensorCoreType<typename Cfg::T>::value)
    kmeansAssignMma<Cfg, Side::Query, true>(p);
  else
    servedAssignExact<Cfg>(p);
}

/// Grid (1, view query heads), block 1024: a stable counting sort of the
/// served queries by cluster (entries -1 skipped), as cluster_sort does for
/// members. q_offsets[C] is the number of served queries.
template <class Cfg> __device__ void served_sort(const MuseParams &p) {
  constexpr int C = Cfg::CQ, kThreads = 1024, kWarps = kThreads / 32;
  static_assert(C <= kThreads, "served_sort scans at most 1024 clusters");
  __shared__ int cursor[C];
  __shared__ int warpTotal[kWarps];
  const int head = blockIdx.y, n = p.N;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int *assign = p.served + (long long)head * n;

  for (int c = tid; c < C; c += kThreads)
    cursor[c] = 0;
  __syncthreads();
  for (int i = tid; i < n; i += kThreads)
    if (assign[i] >= 0)
      atomicAdd(&cursor[assign[i]], 1);
  __syncthreads();
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
    warpTotal[lane] = w;
  }
  __syncthreads();
  const int excl = incl - cnt + (warp > 0 ? warpTotal[warp - 1] : 0);
  int *offsets = p.q_offsets + (long long)head * (C + 1);
  if (tid < C) {
    offsets[tid] = excl;
    cursor[tid] = excl;
  }
  if (tid == 0)
    offsets[C] = warpTotal[kWarps - 1];
  __syncthreads();
  int *perm = p.q_perm + (long long)head * n;
  const unsigned lowerLanes = (1u << lane) - 1u;
  for (int base = 0; base < n; base += kThreads) {
    const int i = base + tid;
    const int a = i < n ? assign[i] : -1;
    const unsigned same = __match_any_sync(0xffffffffu, a);
    const int rank = __popc(same & lowerLanes);
    const int activeWarps = cmin(kWarps, cdiv(n - base, 32));
    for (int w = 0; w < activeWarps; ++w) {
      if (warp == w) {
        const int slot = a >= 0 ? cursor[a] + rank : 0;
        __syncwarp();
        if (a >= 0) {
          perm[slot] = i;
          if (rank == 0)
            cursor[a] += __popc(same);
        }
      }
      __syncthreads();
    }
  }
}

/// Grid (ceil(N/128), B*H), block 128, per-level (real shape): every query
/// the level serves merges the level's partial (part_o; the far field's
/// row_lse of the served view) into o and run_lse, in level order:
/// o = (e^{lse - m} o + e^{lse_p - m} o_p) / (e^{lse - m} + e^{lse_p - m}).
/// One warp per query row (the block's 128 rows in turn), lanes over the
/// channels, so o and part_o are read and written in whole 128-byte lines.
template <class Cfg> __device__ void causal_merge(const MuseParams &p) {
  constexpr int DV = Cfg::DV, S = Cfg::BLOCK_SIZE, W = Cfg::WINDOW_BLOCKS;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int segLen = S << p.seg_level;
  for (int r = warp; r < 128; r += 4) {
    const int t = blockIdx.x * 128 + r;
    int a, n;
    if (t >= p.N || !servedAt<S, W>(t, p.seg_level, a, n))
      continue; // uniform over the warp
    const long long vh = ((long long)hi.b * p.level_segs + a) * p.H + hi.h;
    const float lseP = p.row_lse[vh * segLen + n];
    const long long at = (long long)bh * p.N + t;
    const float lse = p.run_lse[at];
    if (lseP == -kInf())
      continue;
    const float m = fmaxf(lse, lseP);
    const float wa = expf(lse - m), wb = expf(lseP - m), z = wa + wb;
    float *o = p.o + oRow(p, hi.b, hi.h, t);
    const float *op = p.part_o + at * DV;
    for (int c = lane; c < DV; c += 32)
      o[c] = (wa * o[c] + wb * op[c]) / z;
    __syncwarp(); // every lane has read run_lse before lane 0 rewrites it
    if (lane == 0) {
      const float total = m + logf(z);
      p.run_lse[at] = total;
      if (p.lse)
        p.lse[at] = total;
    }
  }
}

/// Grid (ceil(N/256), B*H), block 256, per-level (real shape): the level's
/// key, member-query and served partitions at global positions, -1 where the
/// level has no segment (Types.h Partitions). Only when requested.
template <class Cfg> __device__ void causal_export(const MuseParams &p) {
  constexpr int S = Cfg::BLOCK_SIZE, W = Cfg::WINDOW_BLOCKS;
  if (!p.out_query)
    return;
  const int t = blockIdx.x * 256 + threadIdx.x, bh = blockIdx.y;
  if (t >= p.N)
    return;
  const HeadIndex hi(p, bh);
  const int level = p.seg_level, segLen = S << level, blk = t / S;
  const int a = blk >> (level + 1);
  const bool member = ((blk >> level) & 1) == 0 && a < p.level_segs;
  const long long inSeg = t - (long long)a * p.seg_stride;
  const long long vh = ((long long)hi.b * p.level_segs + a) * p.H + hi.h;
  const long long BH = (long long)p.B * p.H, BHkv = (long long)p.B * p.Hkv;
  p.out_query[((long long)level * BH + bh) * p.N + t] = member ? p.q_assign[vh * segLen + inSeg] : -1;
  const int ratio = p.H / p.Hkv;
  if (hi.h % ratio == 0) {
    const long long vkh = ((long long)hi.b * p.level_segs + a) * p.Hkv + hi.h / ratio;
    p.out_key[((long long)level * BHkv + hi.kh) * p.N + t] =
        member ? p.k_assign[vkh * segLen + inSeg] : -1;
  }
  int sa, n;
  int served = -1;
  if (servedAt<S, W>(t, level, sa, n))
    served = p.served[(((long long)hi.b * p.level_segs + sa) * p.H + hi.h) * segLen + n];
  p.out_served[((long long)level * BH + bh) * p.N + t] = served;
}

} // namespace muse

#endif // MUSE_TEMPLATES_CAUSAL_LEVELS_CUH
