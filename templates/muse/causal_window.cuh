//===- causal_window.cuh - The exact near window of causal MuSe -----------===//
//
// ALGORITHM.md §4: query t of block b = t/S attends exactly to the keys
// [max(0, (b-w+1)S), t] (causal inside its own block). Flash-style: a tile of
// BQ consecutive queries lies inside one block (BQ divides S), so the tile
// shares the window's first key; key tiles of BK pass through shared memory
// and an online softmax keeps (m, l) per row and o in registers. Writes the
// first partial of the merge: o (normalised), run_lse and lse (when non-null).
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_CAUSAL_WINDOW_CUH
#define MUSE_TEMPLATES_CAUSAL_WINDOW_CUH

#include "muse/causal_window_mma.cuh"
#include "muse/common.cuh"

namespace muse {

template <class Cfg> struct WindowTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV, THREADS = Cfg::THREADS;
  static constexpr int BQ = cmin(32, Cfg::BLOCK_SIZE); // a power of two <= S: never straddles a block
  static constexpr int BK = D + DV > 128 ? 16 : 32;
  static constexpr int PER = cdiv(BQ * DV, THREADS); // o elements per thread
  static constexpr int bytes = 4 * (BQ * (D + 1) + BK * (D + 1) + BK * DV + BQ * (BK + 1) + 3 * BQ);
  static_assert(bytes <= kSharedBudget, "window tiles exceed 48 KB of shared memory");
};

/// The fp32 path (f32 inputs, or shapes the tensor-core path does not take).
template <class Cfg> __device__ void causal_window_fp32(const MuseParams &p) {
  using Tl = WindowTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, THREADS = Cfg::THREADS, S = Cfg::BLOCK_SIZE,
                W = Cfg::WINDOW_BLOCKS;
  constexpr int BQ = Tl::BQ, BK = Tl::BK, PER = Tl::PER;
  using T = typename Cfg::T;
  __shared__ float xs[BQ][D + 1];
  __shared__ float ks[BK][D + 1];
  __shared__ float vs[BK][DV];
  __shared__ float s[BQ][BK + 1];
  __shared__ float mrow[BQ], lrow[BQ], alpha[BQ];

  const int tid = threadIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int N = p.N;
  const int t0 = blockIdx.x * BQ;
  const int tq = cmin(BQ, N - t0);
  const int lo = windowBegin<S, W>(t0); // shared by the tile: BQ divides S
  const int hiKey = t0 + tq; // exclusive: the last query's own key is the last one

  for (int e = tid; e < BQ * D; e += THREADS) {
    const int r = e / D, d = e - r * D;
    xs[r][d] = r < tq ? scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, t0 + r) + d)) : 0.f;
  }
  for (int r = tid; r < BQ; r += THREADS) {
    mrow[r] = -kInf();
    lrow[r] = 0.f;
  }
  float acc[PER];
#pragma unroll
  for (int u = 0; u < PER; ++u)
    acc[u] = 0.f;

  for (int l0 = lo; l0 < hiKey; l0 += BK) {
    const int tk = cmin(BK, hiKey - l0);
    __syncthreads(); // the previous tile is no longer read
    for (int e = tid; e < BK * D; e += THREADS) {
      const int c = e / D, d = e - c * D;
      ks[c][d] = c < tk ? loadf<T>(p.k, kRow(p, hi.kh, l0 + c) + d) : 0.f;
    }
    for (int e = tid; e < BK * DV; e += THREADS) {
      const int c = e / DV, d = e - c * DV;
      vs[c][d] = c < tk ? loadf<T>(p.v, vRow(p, hi.kh, l0 + c) + d) : 0.f;
    }
    __syncthreads();
    for (int e = tid; e < BQ * BK; e += THREADS) {
      const int r = e / BK, c = e - r * BK;
      float dotv = -kInf();
      if (r < tq && c < tk && l0 + c <= t0 + r) { // causal inside the block
        dotv = 0.f;
#pragma unroll 16
        for (int d = 0; d < D; ++d)
          dotv = fmaf(xs[r][d], ks[c][d], dotv);
      }
      s[r][c] = dotv;
    }
    __syncthreads();
    for (int r = tid; r < BQ; r += THREADS) {
      float mx = mrow[r];
      for (int c = 0; c < BK; ++c)
        mx = fmaxf(mx, s[r][c]);
      const float a = mx == -kInf() ? 1.f : expf(mrow[r] - mx);
      float sum = 0.f;
      for (int c = 0; c < BK; ++c) {
        const float w = expf(s[r][c] - safeMax(mx));
        s[r][c] = w;
        sum += w;
      }
      alpha[r] = a;
      mrow[r] = mx;
      lrow[r] = fmaf(lrow[r], a, sum);
    }
    __syncthreads();
#pragma unroll
    for (int u = 0; u < PER; ++u) {
      const int e = tid + u * THREADS;
      if (e >= BQ * DV)
        break;
      const int r = e / DV, c = e - r * DV;
      float a = acc[u] * alpha[r];
      for (int t = 0; t < tk; ++t)
        a = fmaf(s[r][t], vs[t][c], a);
      acc[u] = a;
    }
  }
  __syncthreads();
#pragma unroll
  for (int u = 0; u < PER; ++u) {
    const int e = tid + u * THREADS;
    if (e >= BQ * DV)
      break;
    const int r = e / DV, c = e - r * DV;
    if (r < tq)
      p.o[oRow(p, hi.b, hi.h, t0 + r) + c] = acc[u] / lrow[r];
  }
  for (int r = tid; r < tq; r += THREADS) {
    const float lse = mrow[r] + logf(lrow[r]);
    const long long at = (long long)bh * N + t0 + r;
    p.run_lse[at] = lse;
    if (p.lse)
      p.lse[at] = lse;
  }
}

/// 16-bit inputs on the tensor cores (causal_window_mma.cuh: grid
/// (ceil(N/WindowMmaTiles::BQ), B*H), block WindowMmaTiles::THREADS), f32
/// inputs exactly in fp32 (grid (ceil(N/WindowTiles::BQ), B*H), block THREADS);
/// Outline.cpp launches accordingly.
template <class Cfg> __device__ void causal_window(const MuseParams &p) {
  if constexpr (WindowMmaTiles<Cfg>::usable)
    causal_window_mma<Cfg>(p);
  else
    causal_window_fp32<Cfg>(p);
}

} // namespace muse

#endif // MUSE_TEMPLATES_CAUSAL_WINDOW_CUH
