//===- backward_window_mma.cuh - The causal window's backward on the tensor cores ===//
//
// The 16-bit (bf16/f16) path of backward_window.cuh: the same gradients of
// the exact window (query t sees the keys [windowBegin(t), t]),
//   p_tl = e^{scale q_t.k_l - lse_t},  g_tl = p_tl (dO_t.v_l - delta_t + dlse_t)
//   dq_t = scale sum_l g_tl k_l,  dk_l = scale sum_t g_tl q_t,  dv_l = sum_t p_tl dO_t,
// as a flash-attention backward in two kernels, so every output row has one
// writer and no atomics are needed:
//   backward_window_dq_mma   a block owns ROWS queries (a warp per 16) and
//       walks their keys in tiles of KT, double buffered by cp.async; per tile
//       S = Q·Kᵀ and dP = dO·Vᵀ (mma.sync m16n8k16), P and dS = P∘(dP - c) in
//       registers, dQ += dS·K with dS rounded to T as the A fragment;
//   backward_window_dkdv_mma a block owns ROWS keys (a warp per 16) and walks
//       the queries that see them (every head of the GQA group) in tiles of
//       QT; Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ, then dV += Pᵀ·dO and dK += dSᵀ·Q.
// Both recompute P from the merged lse (backward_causal.cuh's split-KV rule).
// ROWS divides S, so a block never straddles a causal block: the window's
// start is common to the whole tile and only t < l needs a mask. Rows past
// the sequence or past the window get lse = +inf, so their P is exactly 0.
// dO and o arrive in T (like q, k, v): dO is staged by cp.async beside Q;
// products accumulate in fp32 and every sum runs in a fixed order, so reruns
// are bit-identical.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_WINDOW_MMA_CUH
#define MUSE_TEMPLATES_BACKWARD_WINDOW_MMA_CUH

#include "muse/backward_common.cuh"
#include "muse/causal_window_mma.cuh"

namespace muse {

/// Tiles of the tensor-core window backward. Backward.cpp mirrors ROWS and
/// THREADS in its launches (grid ceil(N/ROWS) or ceil(M/ROWS), block THREADS).
template <class Cfg> struct BwdWindowMmaTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV;
  static constexpr bool kWide = D + DV > 128;
  static constexpr int ROWS = cmin(kWide ? 32 : 64, Cfg::BLOCK_SIZE); // queries (dq) or keys (dkdv) a block owns
  static constexpr int WARPS = ROWS / 16, THREADS = 32 * WARPS;
  static constexpr int KT = kWide ? 16 : 32; // keys per staged tile of the dq kernel (two buffers)
  // Queries per staged tile of the dkdv kernel: 32 keeps Sᵀ and dPᵀ at 32
  // registers a thread, so the kernel fits 128 (4 blocks an SM, Schedule.cpp
  // kernelMinBlocks); 64 needed 194 and ran 3 % slower capped at 168.
  static constexpr int QT = 32;
  static constexpr int KLD = D + 8, VLD = DV + 8; // padded rows: 16-byte aligned, no bank conflicts
  static constexpr bool usable = TensorCoreType<typename Cfg::T>::value && D % 16 == 0 &&
                                 DV % 16 == 0 && ROWS % 16 == 0;
  static constexpr int dqBytes = 2 * (ROWS * (KLD + VLD) + 2 * KT * (KLD + VLD)) + 8 * ROWS;
  static constexpr int dkdvBytes = 2 * (ROWS + QT) * (KLD + VLD) + 8 * QT;
  static_assert(!usable || (dqBytes <= kSharedBudget && dkdvBytes <= kSharedBudget),
                "window backward tiles exceed 48 KB of shared memory");
};

/// Rows [0, rows) of a [rows, C] tile of T from global rows rowOf(r) (zeros
/// from n on), by cp.async where aligned; the caller commits and waits.
template <class T, int C, int LD, int THREADS, class RowOf>
__device__ __forceinline__ void bwdStageRows(T *dst, int rows, int n, const T *base, RowOf rowOf) {
  constexpr int CC = C / 8;
  for (int e = threadIdx.x; e < rows * CC; e += THREADS) {
    const int r = e / CC, c = 8 * (e - r * CC);
    const bool valid = r < n;
    windowCopy8<T>(dst + r * LD + c, base + (valid ? rowOf(r) + c : 0), valid);
  }
}

/// acc[2np], acc[2np+1] += A(16 rows of `a`, from row a0) · B(16 rows of `b`
/// from row 16np)ᵀ over C columns, for every 16-row group np < NP: the
/// product of two row-major tiles along their rows (S = Q·Kᵀ and kin).
template <int C, int ALD, int BLD, int NP, class T>
__device__ __forceinline__ void bwdRowProducts(float (&acc)[2 * NP][4], const T *a, int a0, const T *b,
                                               int lane) {
  const T *br = b + ((lane & 7) + ((lane >> 4) << 3)) * BLD + ((lane >> 3) & 1) * 8;
#pragma unroll
  for (int kk = 0; kk < C / 16; ++kk) {
    unsigned af[4];
    loadA<ALD, T>(af, a, a0, 16 * kk, lane);
#pragma unroll
    for (int np = 0; np < NP; ++np) {
      unsigned bf[4];
      ldsmX4(bf, br + 16 * np * BLD + 16 * kk);
      mma16816<T>(acc[2 * np], af, bf[0], bf[1]);
      mma16816<T>(acc[2 * np + 1], af, bf[2], bf[3]);
    }
  }
}

/// out[NO][4] += X · B where X (16 x 2NP, fp32 accumulators in A's layout)
/// is rounded to T, and B is the row-major tile b (2NP rows of LD, NO*8 columns).
template <int NO, int LD, int NP, class T>
__device__ __forceinline__ void bwdAccumulate(float (&out)[NO][4], const float (&x)[2 * NP][4], const T *b,
                                              int lane) {
#pragma unroll
  for (int kk = 0; kk < NP; ++kk) {
    const unsigned af[4] = {pack2<T>(x[2 * kk][0], x[2 * kk][1]), pack2<T>(x[2 * kk][2], x[2 * kk][3]),
                            pack2<T>(x[2 * kk + 1][0], x[2 * kk + 1][1]),
                            pack2<T>(x[2 * kk + 1][2], x[2 * kk + 1][3])};
#pragma unroll
    for (int n = 0; n < NO; n += 2) {
      unsigned bf[4];
      loadBTrans<LD, T>(bf, b, 16 * kk, 8 * n, lane);
      mma16816<T>(out[n], af, bf[0], bf[1]);
      mma16816<T>(out[n + 1], af, bf[2], bf[3]);
    }
  }
}

/// Stores the 16 x 8NO accumulator tile of a warp (rows r0 + g and r0 + g + 8)
/// times mul into rows rowOff(r) of out, for rows below n.
template <int NO, class RowOff>
__device__ __forceinline__ void bwdStoreTile(float *out, const float (&acc)[NO][4], int r0, int n, float mul,
                                             int lane, RowOff rowOff) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = r0 + g + 8 * half;
    if (r >= n)
      continue;
    float *row = out + rowOff(r);
#pragma unroll
    for (int c = 0; c < NO; ++c) {
      row[8 * c + 2 * t] = mul * acc[c][2 * half];
      row[8 * c + 2 * t + 1] = mul * acc[c][2 * half + 1];
    }
  }
}

/// dq of the window (stored) and delta_t into bwd_delta. Grid (ceil(N/ROWS),
/// B*H), block THREADS; requires usable.
template <class Cfg> __device__ void backward_window_dq_mma(const MuseParams &p) {
  using Tl = BwdWindowMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, S = Cfg::BLOCK_SIZE, W = Cfg::WINDOW_BLOCKS;
  constexpr int ROWS = Tl::ROWS, KT = Tl::KT, KLD = Tl::KLD, VLD = Tl::VLD, THREADS = Tl::THREADS;
  constexpr int SN = KT / 8, NQ = D / 8;
  constexpr float kLog2e = 1.4426950408889634f;
  __shared__ __align__(16) T qs[ROWS * KLD];
  __shared__ __align__(16) T dos[ROWS * VLD];
  __shared__ __align__(16) T kst[2][KT * KLD];
  __shared__ __align__(16) T vst[2][KT * VLD];
  __shared__ float lse2S[ROWS], cS[ROWS]; // lse_t log2 e, delta_t - dlse_t

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int bh = blockIdx.y, t0 = blockIdx.x * ROWS;
  const HeadIndex hi(p, bh);
  const int qn = cmin(ROWS, p.N - t0);
  const T *q = static_cast<const T *>(p.q), *k = static_cast<const T *>(p.k), *v = static_cast<const T *>(p.v);
  bwdStageRows<T, D, KLD, THREADS>(qs, ROWS, qn, q, [&](int r) { return qRow(p, hi.b, hi.h, t0 + r); });
  bwdStageRows<T, DV, VLD, THREADS>(dos, ROWS, qn, static_cast<const T *>(p.dout),
                                    [&](int r) { return doRow(p, hi.b, hi.h, t0 + r); });
  cpAsyncCommit();
  for (int r = warp; r < ROWS; r += Tl::WARPS) {
    const long long at = (long long)bh * p.N + t0 + r;
    if (r >= qn) {
      if (lane == 0)
        lse2S[r] = kInf(), cS[r] = 0.f;
      continue;
    }
    const long long oAt = oRow(p, hi.b, hi.h, t0 + r), dAt = doRow(p, hi.b, hi.h, t0 + r);
    float s = 0.f;
    for (int d = lane; d < DV; d += 32)
      s = fmaf(loadf<T>(p.dout, dAt + d), loadf<T>(p.o_in, oAt + d), s);
    const float delta = warpSum(s);
    if (lane == 0) {
      p.bwd_delta[at] = delta;
      lse2S[r] = p.run_lse[at] * kLog2e;
      cS[r] = delta - (p.dlse ? p.dlse[at] : 0.f);
    }
  }

  const int lo = windowBegin<S, W>(t0), hiKey = t0 + qn; // keys [lo, hiKey)
  const int rowFirst = t0 + 16 * warp, rowLast = rowFirst + 15;
  const int qa = rowFirst + g, qb = qa + 8;
  const bool live = rowFirst < hiKey; // uniform per warp
  const float sl2 = p.scale * kLog2e;
  auto stage = [&](int k0, int buf) {
    const int n = hiKey - k0;
    bwdStageRows<T, D, KLD, THREADS>(kst[buf], KT, n, k, [&](int r) { return kRow(p, hi.kh, k0 + r); });
    bwdStageRows<T, DV, VLD, THREADS>(vst[buf], KT, n, v, [&](int r) { return vRow(p, hi.kh, k0 + r); });
    cpAsyncCommit();
  };
  float dq[NQ][4];
  zeroFragments(dq);
  __syncthreads(); // lse2S, cS
  const float la = lse2S[16 * warp + g], lb = lse2S[16 * warp + g + 8];
  const float ca = cS[16 * warp + g], cb = cS[16 * warp + g + 8];

  const int nTiles = cdiv(hiKey - lo, KT);
  stage(lo, 0);
  for (int it = 0; it < nTiles; ++it) {
    const int k0 = lo + it * KT;
    if (it + 1 < nTiles) { // the next tile flies while this one is used
      stage(k0 + KT, (it + 1) & 1);
      windowCpAsyncWait<1>();
    } else {
      windowCpAsyncWait<0>();
    }
    __syncthreads(); // tile it (and, the first time, Q and dO) visible to every warp
    const T *ks = kst[it & 1], *vs = vst[it & 1];
    if (live && k0 <= rowLast) {
      float s[SN][4], dp[SN][4];
      zeroFragments(s);
      zeroFragments(dp);
      bwdRowProducts<D, KLD, KLD, SN / 2>(s, qs, 16 * warp, ks, lane);
      bwdRowProducts<DV, VLD, VLD, SN / 2>(dp, dos, 16 * warp, vs, lane);
      const bool diagonal = k0 + KT - 1 > rowFirst; // keys past a query (or past hiKey) are masked
#pragma unroll
      for (int j = 0; j < SN; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int key = k0 + 8 * j + 2 * t + c;
          const float pa = diagonal && key > qa ? 0.f : exp2f(fmaf(s[j][c], sl2, -la));
          const float pb = diagonal && key > qb ? 0.f : exp2f(fmaf(s[j][2 + c], sl2, -lb));
          s[j][c] = pa * (dp[j][c] - ca); // dS
          s[j][2 + c] = pb * (dp[j][2 + c] - cb);
        }
      bwdAccumulate<NQ, KLD, SN / 2>(dq, s, ks, lane);
    }
    __syncthreads(); // every warp is done with this stage before it is refilled
  }
  if (live)
    bwdStoreTile<NQ>(p.dq, dq, 16 * warp, qn, p.scale, lane,
                     [&](int r) { return dqRow(p, hi.b, hi.h, t0 + r); });
}

/// dk, dv of the window for keys [l0, l0 + ROWS): the queries t in
/// [l, (l/S + w) S) of every head of the GQA group see key l. Stores dk, dv
/// (the first writer of every row); needs backward_window_dq_mma's delta.
/// Grid (ceil(M/ROWS), B*Hkv), block THREADS; requires usable.
template <class Cfg> __device__ void backward_window_dkdv_mma(const MuseParams &p) {
  using Tl = BwdWindowMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, S = Cfg::BLOCK_SIZE, W = Cfg::WINDOW_BLOCKS;
  constexpr int ROWS = Tl::ROWS, QT = Tl::QT, KLD = Tl::KLD, VLD = Tl::VLD, THREADS = Tl::THREADS;
  constexpr int SN = QT / 8, NK = D / 8, NV = DV / 8;
  constexpr float kLog2e = 1.4426950408889634f;
  __shared__ __align__(16) T ks[ROWS * KLD];
  __shared__ __align__(16) T vs[ROWS * VLD];
  __shared__ __align__(16) T qs[QT * KLD];
  __shared__ __align__(16) T dos[QT * VLD];
  __shared__ float lse2S[QT], cS[QT];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int l0 = blockIdx.x * ROWS, kh = blockIdx.y;
  const int kn = cmin(ROWS, p.M - l0);
  const int b = kh / p.Hkv, hk = kh - b * p.Hkv, group = p.H / p.Hkv;
  const T *q = static_cast<const T *>(p.q), *k = static_cast<const T *>(p.k), *v = static_cast<const T *>(p.v);
  bwdStageRows<T, D, KLD, THREADS>(ks, ROWS, kn, k, [&](int r) { return kRow(p, kh, l0 + r); });
  bwdStageRows<T, DV, VLD, THREADS>(vs, ROWS, kn, v, [&](int r) { return vRow(p, kh, l0 + r); });
  cpAsyncCommit();

  const int keyFirst = l0 + 16 * warp, keyLast = keyFirst + 15;
  const int ka = keyFirst + g, kb = ka + 8;
  const float sl2 = p.scale * kLog2e;
  float dk[NK][4], dv[NV][4];
  zeroFragments(dk);
  zeroFragments(dv);
  // Queries [l0, tEnd): the last key's window reaches the end of its block + w - 1.
  const int tEnd = cmin(p.N, ((l0 + kn - 1) / S + W) * S);
  for (int gh = 0; gh < group; ++gh) {
    const int bh = b * p.H + hk * group + gh;
    const HeadIndex hi(p, bh);
    for (int q0 = l0; q0 < tEnd; q0 += QT) {
      const int qn = cmin(QT, tEnd - q0);
      __syncthreads(); // the previous query tile is no longer read
      bwdStageRows<T, D, KLD, THREADS>(qs, QT, qn, q, [&](int r) { return qRow(p, hi.b, hi.h, q0 + r); });
      bwdStageRows<T, DV, VLD, THREADS>(dos, QT, qn, static_cast<const T *>(p.dout),
                                        [&](int r) { return doRow(p, hi.b, hi.h, q0 + r); });
      cpAsyncCommit();
      for (int r = threadIdx.x; r < QT; r += THREADS) {
        const long long at = (long long)bh * p.N + q0 + r;
        lse2S[r] = r < qn ? p.run_lse[at] * kLog2e : kInf();
        cS[r] = r < qn ? p.bwd_delta[at] - (p.dlse ? p.dlse[at] : 0.f) : 0.f;
      }
      windowCpAsyncWait<0>();
      __syncthreads();
      float s[SN][4], dp[SN][4];
      zeroFragments(s);
      zeroFragments(dp);
      bwdRowProducts<D, KLD, KLD, SN / 2>(s, ks, 16 * warp, qs, lane);   // Sᵀ
      bwdRowProducts<DV, VLD, VLD, SN / 2>(dp, vs, 16 * warp, dos, lane); // dPᵀ
      const bool diagonal = q0 < keyLast; // some query of the tile precedes some key of the warp
#pragma unroll
      for (int j = 0; j < SN; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int r = 8 * j + 2 * t + c, tq = q0 + r;
          const float L = lse2S[r], C = cS[r];
          const float pa = diagonal && tq < ka ? 0.f : exp2f(fmaf(s[j][c], sl2, -L));
          const float pb = diagonal && tq < kb ? 0.f : exp2f(fmaf(s[j][2 + c], sl2, -L));
          s[j][c] = pa; // Pᵀ
          s[j][2 + c] = pb;
          dp[j][c] = pa * (dp[j][c] - C); // dSᵀ
          dp[j][2 + c] = pb * (dp[j][2 + c] - C);
        }
      bwdAccumulate<NV, VLD, SN / 2>(dv, s, dos, lane);
      bwdAccumulate<NK, KLD, SN / 2>(dk, dp, qs, lane);
    }
  }
  bwdStoreTile<NK>(p.dk, dk, 16 * warp, kn, p.scale, lane, [&](int r) { return dkRowOff(p, kh, l0 + r); });
  bwdStoreTile<NV>(p.dv, dv, 16 * warp, kn, 1.f, lane, [&](int r) { return dvRowOff(p, kh, l0 + r); });
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_WINDOW_MMA_CUH
