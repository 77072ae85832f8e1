//===- backward_window.cuh - The causal window's exact backward, tiled ----===//
//
// Query t sees the keys [windowBegin(t), t] exactly (causal_window.cuh); with
// the merged lse_t and delta_t = dO_t . o_t (split-KV rule,
// backward_causal.cuh):
//   p_tl = e^{x_t.k_l - lse_t},  g_tl = p_tl (dO_t.v_l - delta_t + dlse_t)
//   dq_t = scale * sum_l g_tl k_l,  dk_l = sum_t g_tl x_t,  dv_l = sum_t p_tl dO_t
// f32 inputs: both kernels stage tiles of queries and keys in shared memory
// and form the score tile and its gradient as small products (smem_gemm.cuh),
// flash-style but on the CUDA cores in fp32 (16-bit inputs take the
// tensor-core kernels of backward_window_mma.cuh): backward_window_dq owns WQ queries and walks
// their key range, backward_window_dkdv owns WQ keys and walks the queries
// (every head of the GQA group) that see them. Each output row has one
// writer and every sum runs in a fixed order (tiles ascending, one fmaf per
// term): deterministic without atomics.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_WINDOW_CUH
#define MUSE_TEMPLATES_BACKWARD_WINDOW_CUH

#include "muse/backward_common.cuh"
#include "muse/backward_window_mma.cuh"
#include "muse/smem_gemm.cuh"

namespace muse {

/// Tile sizes of the window backward: WQ rows owned per block, WT rows of the
/// other side per step; rows padded by one float (conflict-free columns).
/// Sized to stay under the static shared-memory limit for D, Dv up to 128.
template <class Cfg> struct BwdWindowTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV;
  static constexpr int WQ = D + DV <= 128 ? 32 : 16, WT = WQ;
  static constexpr int DP = D + 1, VP = DV + 1, TP = WT + 1;
};

/// Rows [r0, r0 + n) of a [rows, D] tensor into a padded shared tile (zeros past n).
template <int ROWS, int D, int DP, class Row>
__device__ __forceinline__ void stageRows(float *tile, int n, Row row) {
  for (int e = threadIdx.x; e < ROWS * D; e += kBwdThreads) {
    const int r = e / D, d = e - r * D;
    tile[r * DP + d] = r < n ? row(r, d) : 0.f;
  }
}

/// dq of the window (stored: the first writer of every row) and delta_t into
/// bwd_delta. Grid (ceil(N / WQ), B*H), block kBwdThreads.
template <class Cfg> __device__ void backward_window_dq_fp32(const MuseParams &p) {
  using Tl = BwdWindowTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, S = Cfg::BLOCK_SIZE, W = Cfg::WINDOW_BLOCKS;
  constexpr int WQ = Tl::WQ, WT = Tl::WT, DP = Tl::DP, VP = Tl::VP, TP = Tl::TP;
  using T = typename Cfg::T;
  __shared__ float Xs[WQ * DP], dOs[WQ * VP], Ks[WT * DP], Vs[WT * VP], Gs[WQ * TP];
  __shared__ float lseS[WQ], cS[WQ]; // lse_t and delta_t - dlse_t

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int t0 = blockIdx.x * WQ, bh = blockIdx.y;
  const int qn = cmin(WQ, p.N - t0);
  const HeadIndex hi(p, bh);
  stageRows<WQ, DV, VP>(dOs, qn, [&](int r, int d) {
    return loadf<T>(p.dout, doRow(p, hi.b, hi.h, t0 + r) + d);
  });
  stageRows<WQ, D, DP>(Xs, qn, [&](int r, int d) {
    return scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, t0 + r) + d));
  });
  for (int r = warp; r < qn; r += kBwdWarps) {
    const long long at = (long long)bh * p.N + t0 + r;
    float s = 0.f;
    const long long oAt = oRow(p, hi.b, hi.h, t0 + r), dAt = doRow(p, hi.b, hi.h, t0 + r);
    for (int d = lane; d < DV; d += 32)
      s = fmaf(loadf<T>(p.dout, dAt + d), loadf<T>(p.o_in, oAt + d), s);
    const float delta = warpSum(s);
    if (lane == 0) {
      p.bwd_delta[at] = delta;
      lseS[r] = p.run_lse[at];
      cS[r] = delta - (p.dlse ? p.dlse[at] : 0.f);
    }
  }

  const MicroTile<WQ, WT, kBwdThreads> mS(tid);
  const MicroTile<WQ, D, kBwdThreads> mQ(tid);
  float dq[decltype(mQ)::TM][decltype(mQ)::TN] = {};
  const int lEnd = t0 + qn; // keys [windowBegin(t0), t0 + qn)
  for (int l0 = windowBegin<S, W>(t0); l0 < lEnd; l0 += WT) {
    const int kn = cmin(WT, lEnd - l0);
    __syncthreads(); // the previous key tile and G are no longer read
    stageRows<WT, D, DP>(Ks, kn, [&](int r, int d) { return loadf<T>(p.k, kRow(p, hi.kh, l0 + r) + d); });
    stageRows<WT, DV, VP>(Vs, kn, [&](int r, int d) { return loadf<T>(p.v, vRow(p, hi.kh, l0 + r) + d); });
    __syncthreads();
    {
      float s[decltype(mS)::TM][decltype(mS)::TN] = {};
      float dp[decltype(mS)::TM][decltype(mS)::TN] = {};
      gemmAccumulate<DP, 1, 1, DP>(mS, s, Xs, Ks, D);
      gemmAccumulate<VP, 1, 1, VP>(mS, dp, dOs, Vs, DV);
#pragma unroll
      for (int a = 0; a < decltype(mS)::TM; ++a)
#pragma unroll
        for (int c = 0; c < decltype(mS)::TN; ++c) {
          if (!mS.valid(a, c))
            continue;
          const int r = mS.row(a), kk = mS.col(c), t = t0 + r, l = l0 + kk;
          const bool in = r < qn && kk < kn && l <= t && l >= windowBegin<S, W>(t);
          Gs[r * TP + kk] = in ? expf(s[a][c] - lseS[r]) * (dp[a][c] - cS[r]) : 0.f;
        }
    }
    __syncthreads();
    gemmAccumulate<TP, 1, DP, 1>(mQ, dq, Gs, Ks, kn);
  }
#pragma unroll
  for (int a = 0; a < decltype(mQ)::TM; ++a) {
    const int r = mQ.row(a);
    if (r >= qn)
      continue;
    float *row = p.dq + dqRow(p, hi.b, hi.h, t0 + r);
#pragma unroll
    for (int c = 0; c < decltype(mQ)::TN; ++c)
      if (mQ.valid(a, c))
        row[mQ.col(c)] = p.scale * dq[a][c];
  }
}

/// dk, dv of the window for keys [l0, l0 + WQ): the queries t in
/// [l, (l/S + w) S) of every head of the GQA group see key l. Stores dk, dv
/// (the first writer of every row); needs backward_window_dq's delta.
/// Grid (ceil(M / WQ), B*Hkv), block kBwdThreads.
template <class Cfg> __device__ void backward_window_dkdv_fp32(const MuseParams &p) {
  using Tl = BwdWindowTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, S = Cfg::BLOCK_SIZE, W = Cfg::WINDOW_BLOCKS;
  constexpr int WQ = Tl::WQ, WT = Tl::WT, DP = Tl::DP, VP = Tl::VP, TP = Tl::TP;
  using T = typename Cfg::T;
  __shared__ float Ks[WQ * DP], Vs[WQ * VP], Xs[WT * DP], dOs[WT * VP], Ps[WQ * TP], Gs[WQ * TP];
  __shared__ float lseS[WT], cS[WT];

  const int tid = threadIdx.x;
  const int l0 = blockIdx.x * WQ, kh = blockIdx.y;
  const int kn = cmin(WQ, p.M - l0);
  const int b = kh / p.Hkv, hk = kh - b * p.Hkv, group = p.H / p.Hkv;
  stageRows<WQ, D, DP>(Ks, kn, [&](int r, int d) { return loadf<T>(p.k, kRow(p, kh, l0 + r) + d); });
  stageRows<WQ, DV, VP>(Vs, kn, [&](int r, int d) { return loadf<T>(p.v, vRow(p, kh, l0 + r) + d); });

  const MicroTile<WQ, WT, kBwdThreads> mS(tid);
  const MicroTile<WQ, D, kBwdThreads> mK(tid);
  const MicroTile<WQ, DV, kBwdThreads> mV(tid);
  float dk[decltype(mK)::TM][decltype(mK)::TN] = {};
  float dv[decltype(mV)::TM][decltype(mV)::TN] = {};
  // Queries [l0, tEnd): the last key's window reaches the end of its block + w - 1.
  const int tEnd = cmin(p.N, ((l0 + kn - 1) / S + W) * S);
  for (int g = 0; g < group; ++g) {
    const int bh = b * p.H + hk * group + g;
    const HeadIndex hi(p, bh);
    for (int q0 = l0; q0 < tEnd; q0 += WT) {
      const int qn = cmin(WT, tEnd - q0);
      __syncthreads(); // the previous query tile, P and G are no longer read
      stageRows<WT, D, DP>(Xs, qn, [&](int r, int d) {
        return scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, q0 + r) + d));
      });
      stageRows<WT, DV, VP>(dOs, qn, [&](int r, int d) {
        return loadf<T>(p.dout, doRow(p, hi.b, hi.h, q0 + r) + d);
      });
      for (int r = tid; r < qn; r += kBwdThreads) {
        const long long at = (long long)bh * p.N + q0 + r;
        lseS[r] = p.run_lse[at];
        cS[r] = p.bwd_delta[at] - (p.dlse ? p.dlse[at] : 0.f);
      }
      __syncthreads();
      {
        float s[decltype(mS)::TM][decltype(mS)::TN] = {};
        float dp[decltype(mS)::TM][decltype(mS)::TN] = {};
        gemmAccumulate<DP, 1, 1, DP>(mS, s, Ks, Xs, D);
        gemmAccumulate<VP, 1, 1, VP>(mS, dp, Vs, dOs, DV);
#pragma unroll
        for (int a = 0; a < decltype(mS)::TM; ++a)
#pragma unroll
          for (int c = 0; c < decltype(mS)::TN; ++c) {
            if (!mS.valid(a, c))
              continue;
            const int kk = mS.row(a), r = mS.col(c), l = l0 + kk, t = q0 + r;
            const bool in = kk < kn && r < qn && l <= t && l >= windowBegin<S, W>(t);
            const float pr = in ? expf(s[a][c] - lseS[r]) : 0.f;
            Ps[kk * TP + r] = pr;
            Gs[kk * TP + r] = in ? pr * (dp[a][c] - cS[r]) : 0.f; // cS past qn is stale
          }
      }
      __syncthreads();
      gemmAccumulate<TP, 1, DP, 1>(mK, dk, Gs, Xs, qn);
      gemmAccumulate<TP, 1, VP, 1>(mV, dv, Ps, dOs, qn);
    }
  }
#pragma unroll
  for (int a = 0; a < decltype(mK)::TM; ++a) {
    const int kk = mK.row(a);
    if (kk >= kn)
      continue;
    float *row = p.dk + dkRowOff(p, kh, l0 + kk);
#pragma unroll
    for (int c = 0; c < decltype(mK)::TN; ++c)
      if (mK.valid(a, c))
        row[mK.col(c)] = dk[a][c];
  }
#pragma unroll
  for (int a = 0; a < decltype(mV)::TM; ++a) {
    const int kk = mV.row(a);
    if (kk >= kn)
      continue;
    float *row = p.dv + dvRowOff(p, kh, l0 + kk);
#pragma unroll
    for (int c = 0; c < decltype(mV)::TN; ++c)
      if (mV.valid(a, c))
        row[mV.col(c)] = dv[a][c];
  }
}

/// 16-bit inputs on the tensor cores (backward_window_mma.cuh: grid
/// (ceil(N/ROWS), B*H) and (ceil(M/ROWS), B*Hkv), block THREADS of
/// BwdWindowMmaTiles), f32 inputs exactly in fp32 (grid ceil(N/WQ) and
/// ceil(M/WQ), block kBwdThreads); Backward.cpp launches accordingly.
template <class Cfg> __device__ void backward_window_dq(const MuseParams &p) {
  if constexpr (BwdWindowMmaTiles<Cfg>::usable)
    backward_window_dq_mma<Cfg>(p);
  else
    backward_window_dq_fp32<Cfg>(p);
}
template <class Cfg> __device__ void backward_window_dkdv(const MuseParams &p) {
  if constexpr (BwdWindowMmaTiles<Cfg>::usable)
    backward_window_dkdv_mma<Cfg>(p);
  else
    backward_window_dkdv_fp32<Cfg>(p);
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_WINDOW_CUH
