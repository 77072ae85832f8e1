//===- backward_window_mma.cuh - The causal window's backward on the tensor cores ===//
//
// The 16-bit (bf16/f16) path of backward_window.cuh: the same gradients of
// the exact window (query t sees the keys [windowBegin(t), t]),
//   p_tl = e^{scale q_t.k_l - lse_t},  g_tl = p_tl (dO_t.v_l - delta_t + dlse_t)
//   dq_t = scale sum_l g_tl k_l,  dk_l = scale sum_t g_tl q_t,  dv_l = sum_t p_tl dO_t,
// as a flash-attention backward in two kernels, so every output row has one
// writer and no atomics are needed:
//   backward_window_dq_mma   a block owns DQ_ROWS queries (a warp per 16),
//       whose Q and dO fragments stay in registers for the whole loop, and
//       walks their keys in tiles of KT, double buffered by cp.async; per tile
//       S = Q·Kᵀ and dP = dO·Vᵀ (mma.sync m16n8k16), P and dS = P∘(dP - c) in
//       registers, dQ += dS·K with dS rounded to T as the A fragment;
//   backward_window_dkdv_mma a block owns DKDV_ROWS keys (a warp per 16) and
//       walks the queries that see them (every head of the GQA group) in
//       tiles of QT, double buffered by cp.async with their lse and delta;
//       Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ, then dV += Pᵀ·dO and dK += dSᵀ·Q.
// Both recompute P from the merged lse (backward_causal.cuh's split-KV rule).
// The row tiles divide S, so a block never straddles a causal block: the
// window's start is common to the whole tile and only t < l needs a mask.
// Rows past the sequence or past the window get lse = +inf, so their P is
// exactly 0. dO and o arrive in T (like q, k, v); products accumulate in
// fp32 and every sum runs in a fixed order, so reruns are bit-identical.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_WINDOW_MMA_CUH
#define MUSE_TEMPLATES_BACKWARD_WINDOW_MMA_CUH

#include "muse/backward_common.cuh"
#include "muse/causal_window_mma.cuh"

namespace muse {

/// Tiles of the tensor-core window backward. Backward.cpp mirrors the rows
/// and threads of both kernels in its launches (grid ceil(N/DQ_ROWS) or
/// ceil(M/DKDV_ROWS), blocks DQ_THREADS and DKDV_THREADS), Schedule.cpp the
/// register caps. Chosen on the H100 at S 2048, D 64 (bench/NOTES.md,
/// version 11): dq 128 queries (8 warps, 2 blocks an SM at 128 registers) ran
/// 1.13x faster than 64; dkdv 64 keys with K and V in shared memory ran as
/// fast as K and V in registers (168 registers, 3 blocks) and faster than
/// 128 keys or 64-query tiles.
template <class Cfg> struct BwdWindowMmaTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV;
  static constexpr bool kWide = D + DV > 128;
  static constexpr int DQ_ROWS = cmin(kWide ? 32 : 128, Cfg::BLOCK_SIZE);  // queries a dq block owns
  static constexpr int DKDV_ROWS = cmin(kWide ? 32 : 64, Cfg::BLOCK_SIZE); // keys a dk/dv block owns
  static constexpr int DQ_THREADS = 2 * DQ_ROWS, DKDV_THREADS = 2 * DKDV_ROWS; // a warp per 16 rows
  static constexpr int KT = kWide ? 16 : 32; // keys per staged tile of the dq kernel (two buffers)
  // Queries per staged tile of the dkdv kernel (two buffers).
  static constexpr int QT = kWide ? 16 : 32;
  // dkdv: K and V of a warp's keys as A fragments in registers for the whole
  // loop (true) or staged in shared memory and loaded per tile (false).
  static constexpr bool KV_REGS = false;
  static constexpr int KLD = D + 8, VLD = DV + 8; // padded rows: 16-byte aligned, no bank conflicts
  static constexpr bool usable = TensorCoreType<typename Cfg::T>::value && D % 16 == 0 &&
                                 DV % 16 == 0 && DQ_ROWS % 16 == 0 && DKDV_ROWS % 16 == 0;
  static constexpr int dqBytes = 2 * 2 * KT * (KLD + VLD);
  static constexpr int dkdvBytes =
      2 * (2 * QT + (KV_REGS ? 0 : DKDV_ROWS)) * (KLD + VLD) + 2 * 3 * 4 * QT;
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

/// delta_t = dO_t . o_t of the rows [t0, t0 + n) of head (b, h) into
/// bwd_delta: DV/8 lanes a row, each one 16-byte run of dO and of o, every
/// load of the warp issued before the first sum.
template <class Cfg, int ROWS, int THREADS>
__device__ __forceinline__ void windowDelta(const MuseParams &p, int bh, const HeadIndex &hi, int t0, int n) {
  using T = typename Cfg::T;
  constexpr int DV = Cfg::DV, LPR = cmin(32, DV / 8), RPW = 32 / LPR, SEGS = DV / (8 * LPR);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane / LPR, seg = lane - sub * LPR;
  const T *dout = static_cast<const T *>(p.dout), *oin = static_cast<const T *>(p.o_in);
  for (int r0 = RPW * warp; r0 < ROWS; r0 += RPW * (THREADS / 32)) {
    const int r = r0 + sub;
    float s = 0.f;
    if (r < n) {
      const T *dr = dout + doRow(p, hi.b, hi.h, t0 + r), *orow = oin + oRow(p, hi.b, hi.h, t0 + r);
#pragma unroll
      for (int c = 0; c < SEGS; ++c) {
        const int d = 8 * (seg + LPR * c);
        float x[8], y[8];
        load8<T>(dr, d, x);
        load8<T>(orow, d, y);
#pragma unroll
        for (int e = 0; e < 8; ++e)
          s = fmaf(x[e], y[e], s);
      }
    }
#pragma unroll
    for (int off = LPR / 2; off >= 1; off >>= 1)
      s += __shfl_xor_sync(0xffffffffu, s, off);
    if (seg == 0 && r < n)
      p.bwd_delta[(long long)bh * p.N + t0 + r] = s;
  }
}

/// dq of the window (stored) and delta_t into bwd_delta. Grid
/// (ceil(N/DQ_ROWS), B*H), block DQ_THREADS; requires usable.
template <class Cfg, class Tl = BwdWindowMmaTiles<Cfg>> __device__ void backward_window_dq_mma(const MuseParams &p) {
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, S = Cfg::BLOCK_SIZE, W = Cfg::WINDOW_BLOCKS;
  constexpr int ROWS = Tl::DQ_ROWS, KT = Tl::KT, KLD = Tl::KLD, VLD = Tl::VLD, THREADS = Tl::DQ_THREADS;
  constexpr int SN = KT / 8, NQ = D / 8, KD = D / 16, VD = DV / 16;
  constexpr float kLog2e = 1.4426950408889634f;
  __shared__ __align__(16) T kst[2][KT * KLD];
  __shared__ __align__(16) T vst[2][KT * VLD];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int bh = blockIdx.y, t0 = blockIdx.x * ROWS;
  const HeadIndex hi(p, bh);
  const int qn = cmin(ROWS, p.N - t0);
  const T *q = static_cast<const T *>(p.q), *k = static_cast<const T *>(p.k), *v = static_cast<const T *>(p.v);
  const T *dout = static_cast<const T *>(p.dout);
  const int lo = windowBegin<S, W>(t0), hiKey = t0 + qn; // keys [lo, hiKey)
  const WindowRows<T> kRows(k, kRow(p, hi.kh, 0), p.k_sm), vRows(v, vRow(p, hi.kh, 0), p.v_sm);
  auto stage = [&](int k0, int buf) {
    windowStageRows<T, D, KLD, KT, THREADS>(kst[buf], kRows, k0, hiKey - k0);
    windowStageRows<T, DV, VLD, KT, THREADS>(vst[buf], vRows, k0, hiKey - k0);
    cpAsyncCommit();
  };
  const int nTiles = cdiv(hiKey - lo, KT);
  stage(lo, 0); // in flight during the prologue
  windowDelta<Cfg, ROWS, THREADS>(p, bh, hi, t0, qn);

  const int rowFirst = t0 + 16 * warp, rowLast = rowFirst + 15;
  const int qa = rowFirst + g, qb = qa + 8;
  const bool live = rowFirst < hiKey; // uniform per warp
  const bool va = qa < hiKey, vb = qb < hiKey;
  // Q and dO as A fragments for the whole loop (rows past N are zero).
  unsigned qf[KD][4], df[VD][4];
  loadRowFragments<KD>(qf, va ? q + qRow(p, hi.b, hi.h, qa) : nullptr,
                       vb ? q + qRow(p, hi.b, hi.h, qb) : nullptr, t);
  loadRowFragments<VD>(df, va ? dout + doRow(p, hi.b, hi.h, qa) : nullptr,
                       vb ? dout + doRow(p, hi.b, hi.h, qb) : nullptr, t);
  __syncthreads(); // bwd_delta of the block's rows is written
  // lse_t log2 e and delta_t - dlse_t of this lane's two rows (+inf: P = 0).
  const long long at = (long long)bh * p.N;
  const float la = va ? p.run_lse[at + qa] * kLog2e : kInf(), lb = vb ? p.run_lse[at + qb] * kLog2e : kInf();
  const float ca = va ? p.bwd_delta[at + qa] - (p.dlse ? p.dlse[at + qa] : 0.f) : 0.f;
  const float cb = vb ? p.bwd_delta[at + qb] - (p.dlse ? p.dlse[at + qb] : 0.f) : 0.f;
  const float sl2 = p.scale * kLog2e;
  float dq[NQ][4];
  zeroFragments(dq);

  for (int it = 0; it < nTiles; ++it) {
    const int k0 = lo + it * KT;
    if (it + 1 < nTiles) { // the next tile flies while this one is used
      stage(k0 + KT, (it + 1) & 1);
      windowCpAsyncWait<1>();
    } else {
      windowCpAsyncWait<0>();
    }
    __syncthreads(); // tile it is visible to every warp
    const T *ks = kst[it & 1], *vs = vst[it & 1];
    if (live && k0 <= rowLast) {
      // S = Q·Kᵀ and dP = dO·Vᵀ over the whole tile, interleaved with the
      // k-steps outer: 2·SN independent accumulator chains (groups past the
      // warp's rows are masked below).
      float s[SN][4], dp[SN][4];
      zeroFragments(s);
      zeroFragments(dp);
      const int brow = ((lane & 7) + ((lane >> 4) << 3)), bcol = ((lane >> 3) & 1) * 8;
#pragma unroll
      for (int kk = 0; kk < cmax(KD, VD); ++kk)
#pragma unroll
        for (int np = 0; np < SN / 2; ++np) {
          unsigned b[4];
          if (kk < KD) {
            ldsmX4(b, ks + (16 * np + brow) * KLD + bcol + 16 * kk);
            mma16816<T>(s[2 * np], qf[kk], b[0], b[1]);
            mma16816<T>(s[2 * np + 1], qf[kk], b[2], b[3]);
          }
          if (kk < VD) {
            ldsmX4(b, vs + (16 * np + brow) * VLD + bcol + 16 * kk);
            mma16816<T>(dp[2 * np], df[kk], b[0], b[1]);
            mma16816<T>(dp[2 * np + 1], df[kk], b[2], b[3]);
          }
        }
      const bool diagonal = k0 + KT - 1 > rowFirst; // keys past a query (or past hiKey) are masked
#pragma unroll
      for (int j = 0; j < SN; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int key = k0 + 8 * j + 2 * t + c;
          const float pa = diagonal && key > qa ? 0.f : exp2Ftz(fmaf(s[j][c], sl2, -la));
          const float pb = diagonal && key > qb ? 0.f : exp2Ftz(fmaf(s[j][2 + c], sl2, -lb));
          s[j][c] = pa * (dp[j][c] - ca); // dS
          s[j][2 + c] = pb * (dp[j][2 + c] - cb);
        }
      bwdAccumulate<NQ, KLD, SN / 2>(dq, s, ks, lane); // dQ += dS·K (masked dS are exact zeros)
    }
    __syncthreads(); // every warp is done with this stage before it is refilled
  }
  if (live)
    bwdStoreTile<NQ>(p.dq, dq, 16 * warp, qn, p.scale, lane,
                     [&](int r) { return dqRow(p, hi.b, hi.h, t0 + r); });
}

/// dk, dv of the window for keys [l0, l0 + DKDV_ROWS): the queries t in
/// [l, (l/S + w) S) of every head of the GQA group see key l. Stores dk, dv
/// (the first writer of every row); needs backward_window_dq_mma's delta.
/// Grid (ceil(M/DKDV_ROWS), B*Hkv), block DKDV_THREADS; requires usable.
template <class Cfg, class Tl = BwdWindowMmaTiles<Cfg>>
__device__ void backward_window_dkdv_mma(const MuseParams &p) {
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, S = Cfg::BLOCK_SIZE, W = Cfg::WINDOW_BLOCKS;
  constexpr int ROWS = Tl::DKDV_ROWS, QT = Tl::QT, KLD = Tl::KLD, VLD = Tl::VLD, THREADS = Tl::DKDV_THREADS;
  constexpr int SN = QT / 8, NK = D / 8, NV = DV / 8, KD = D / 16, VD = DV / 16;
  constexpr float kLog2e = 1.4426950408889634f;
  constexpr bool KV_REGS = Tl::KV_REGS;
  __shared__ __align__(16) T qst[2][QT * KLD];
  __shared__ __align__(16) T dost[2][QT * VLD];
  __shared__ __align__(16) T kvs[KV_REGS ? 1 : ROWS * (KLD + VLD)]; // K rows, then V rows
  __shared__ __align__(16) float lseS[2][QT], deltaS[2][QT], dlseS[2][QT];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int l0 = blockIdx.x * ROWS, kh = blockIdx.y;
  const int kn = cmin(ROWS, p.M - l0);
  const int b = kh / p.Hkv, hk = kh - b * p.Hkv, group = p.H / p.Hkv;
  const T *k = static_cast<const T *>(p.k), *v = static_cast<const T *>(p.v);

  // Queries [l0, tEnd) of every head of the group, as (head, tile) steps:
  // the last key's window reaches the end of its block + w - 1.
  const int tEnd = cmin(p.N, ((l0 + kn - 1) / S + W) * S);
  const int tilesPerHead = cdiv(tEnd - l0, QT), steps = group * tilesPerHead;
  // Stage the tile at q0 of group head gh: its Q and dO rows, lse (+inf past
  // the sequence: P = 0), delta and dlse, one commit group. The window's
  // launches see the whole sequence (seg_count == 0): row n of head h is
  // b*sb + h*sh + n*sn.
  auto stage = [&](int gh, int q0, int buf) {
    const int qn = cmin(QT, tEnd - q0);
    const int h = hk * group + gh, bh = b * p.H + h;
    windowStageRows<T, D, KLD, QT, THREADS>(qst[buf], WindowRows<T>(p.q, b * p.q_sb + h * p.q_sh, p.q_sn), q0,
                                            qn);
    windowStageRows<T, DV, VLD, QT, THREADS>(dost[buf], WindowRows<T>(p.dout, b * p.do_sb + h * p.do_sh, p.do_sn),
                                             q0, qn);
    for (int r = threadIdx.x; r < QT; r += THREADS) {
      const long long at = (long long)bh * p.N + q0 + r;
      if (r < qn) {
        cpAsync4(&lseS[buf][r], p.run_lse + at);
        cpAsync4(&deltaS[buf][r], p.bwd_delta + at);
        if (p.dlse)
          cpAsync4(&dlseS[buf][r], p.dlse + at);
        else
          dlseS[buf][r] = 0.f;
      } else {
        lseS[buf][r] = kInf();
        deltaS[buf][r] = dlseS[buf][r] = 0.f;
      }
    }
    cpAsyncCommit();
  };
  if constexpr (!KV_REGS) {
    windowStageRows<T, D, KLD, ROWS, THREADS>(kvs, WindowRows<T>(k, kRow(p, kh, 0), p.k_sm), l0, kn);
    windowStageRows<T, DV, VLD, ROWS, THREADS>(kvs + ROWS * KLD, WindowRows<T>(v, vRow(p, kh, 0), p.v_sm), l0, kn);
  }
  stage(0, l0, 0); // (with K and V) in flight while the key fragments load

  const int keyFirst = l0 + 16 * warp, keyLast = keyFirst + 15;
  const int ka = keyFirst + g, kb = ka + 8;
  // K and V of this warp's 16 keys as A fragments for the whole loop (keys
  // past M are zero and never written).
  unsigned kf[KV_REGS ? KD : 1][4], vf[KV_REGS ? VD : 1][4];
  if constexpr (KV_REGS) {
    const bool va = ka < l0 + kn, vb = kb < l0 + kn;
    loadRowFragments<KD>(kf, va ? k + kRow(p, kh, ka) : nullptr, vb ? k + kRow(p, kh, kb) : nullptr, t);
    loadRowFragments<VD>(vf, va ? v + vRow(p, kh, ka) : nullptr, vb ? v + vRow(p, kh, kb) : nullptr, t);
  }
  const float sl2 = p.scale * kLog2e;
  float dk[NK][4], dv[NV][4];
  zeroFragments(dk);
  zeroFragments(dv);
  const int brow = ((lane & 7) + ((lane >> 4) << 3)), bcol = ((lane >> 3) & 1) * 8;
  int nextGh = 0, nextQ0 = l0; // the step in flight
  for (int i = 0; i < steps; ++i) {
    const int q0 = nextQ0; // the step in use
    if (i + 1 < steps) { // the next tile flies while this one is used
      nextQ0 = q0 + QT;
      if (nextQ0 >= tEnd)
        ++nextGh, nextQ0 = l0;
      stage(nextGh, nextQ0, (i + 1) & 1);
      windowCpAsyncWait<1>();
    } else {
      windowCpAsyncWait<0>();
    }
    __syncthreads(); // step i visible to every warp
    const T *qs = qst[i & 1], *dos = dost[i & 1];
    if (q0 + QT - 1 >= keyFirst) { // some query of the tile sees some key of the warp
      // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ, interleaved with the k-steps outer.
      float s[SN][4], dp[SN][4];
      zeroFragments(s);
      zeroFragments(dp);
#pragma unroll
      for (int kk = 0; kk < cmax(KD, VD); ++kk) {
        unsigned ka4[4], va4[4];
        if constexpr (!KV_REGS) {
          if (kk < KD)
            loadA<KLD, T>(ka4, kvs, 16 * warp, 16 * kk, lane);
          if (kk < VD)
            loadA<VLD, T>(va4, kvs + ROWS * KLD, 16 * warp, 16 * kk, lane);
        }
#pragma unroll
        for (int np = 0; np < SN / 2; ++np) {
          unsigned bf[4];
          if (kk < KD) {
            const unsigned(&a)[4] = KV_REGS ? kf[KV_REGS ? kk : 0] : ka4;
            ldsmX4(bf, qs + (16 * np + brow) * KLD + bcol + 16 * kk);
            mma16816<T>(s[2 * np], a, bf[0], bf[1]);
            mma16816<T>(s[2 * np + 1], a, bf[2], bf[3]);
          }
          if (kk < VD) {
            const unsigned(&a)[4] = KV_REGS ? vf[KV_REGS ? kk : 0] : va4;
            ldsmX4(bf, dos + (16 * np + brow) * VLD + bcol + 16 * kk);
            mma16816<T>(dp[2 * np], a, bf[0], bf[1]);
            mma16816<T>(dp[2 * np + 1], a, bf[2], bf[3]);
          }
        }
      }
      const bool diagonal = q0 < keyLast; // some query of the tile precedes some key of the warp
#pragma unroll
      for (int j = 0; j < SN; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int r = 8 * j + 2 * t + c, tq = q0 + r;
          const float L = lseS[i & 1][r] * kLog2e, C = deltaS[i & 1][r] - dlseS[i & 1][r];
          const float pa = diagonal && tq < ka ? 0.f : exp2Ftz(fmaf(s[j][c], sl2, -L));
          const float pb = diagonal && tq < kb ? 0.f : exp2Ftz(fmaf(s[j][2 + c], sl2, -L));
          s[j][c] = pa; // Pᵀ
          s[j][2 + c] = pb;
          dp[j][c] = pa * (dp[j][c] - C); // dSᵀ
          dp[j][2 + c] = pb * (dp[j][2 + c] - C);
        }
      bwdAccumulate<NV, VLD, SN / 2>(dv, s, dos, lane);
      bwdAccumulate<NK, KLD, SN / 2>(dk, dp, qs, lane);
    }
    __syncthreads(); // every warp is done with this stage before it is refilled
  }
  bwdStoreTile<NK>(p.dk, dk, 16 * warp, kn, p.scale, lane, [&](int r) { return dkRowOff(p, kh, l0 + r); });
  bwdStoreTile<NV>(p.dv, dv, 16 * warp, kn, 1.f, lane, [&](int r) { return dvRowOff(p, kh, l0 + r); });
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_WINDOW_MMA_CUH
