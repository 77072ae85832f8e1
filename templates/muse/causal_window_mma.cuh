//===- causal_window_mma.cuh - The exact causal window on the tensor cores ===//
//
// The 16-bit (bf16/f16) path of causal_window (ALGORITHM.md §4): query t of
// block b = t/S attends exactly to the keys [max(0, (b-w+1)S), t].
//
// A flash-attention forward. A block takes BQ = min(128, S) consecutive
// queries (64 when D + DV > 128, to keep registers for two blocks per SM);
// BQ divides S, so the tile never straddles a causal block and every query
// of it shares the window's first key. Its BQ/16 warps own 16 query rows
// each and walk the window in key tiles of BK that all warps share:
//   K and V tiles are staged in shared memory by cp.async, double buffered
//             (tile i+1 is in flight while tile i is used),
//   S = Q·Kᵀ  mma.sync m16n8k16 (Q exact in T as A fragments held for the
//             whole loop; K's B fragments by ldmatrix),
//   online softmax in the log2 domain (scale·log2 e folded into one FMA
//             before exp2), the causal mask only on tiles that reach past a
//             warp's first query,
//   O += P·V  with P rounded to T as the A fragment (the S accumulators are
//             already in A's layout) and V's B fragments by ldmatrix.trans.
// Tiles past a warp's last query are skipped by that warp (it still helps
// stage them). Each row has one owner, so the result is deterministic and
// depends only on keys <= its query. Logits are scale·(q·k) with exact
// products and fp32 sums; P in T costs ~2^-9 relative per weight, far inside
// the 16-bit tolerance. Writes o (normalised), run_lse and lse (when
// non-null): the first partial of causal_merge.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_CAUSAL_WINDOW_MMA_CUH
#define MUSE_TEMPLATES_CAUSAL_WINDOW_MMA_CUH

#include "muse/common.cuh"
#include "muse/smem_gemm.cuh"

namespace muse {

template <class Cfg> struct WindowMmaTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV;
  static constexpr bool kWide = D + DV > 128;
  // The grid and block of the launch (Outline.cpp mirrors BQ and THREADS).
  static constexpr int BQ = cmin(kWide ? 64 : 128, Cfg::BLOCK_SIZE);
  static constexpr int WARPS = BQ / 16, THREADS = 32 * WARPS;
  static constexpr int BK = kWide ? 32 : 64;    // keys per staged tile
  static constexpr int KLD = D + 8, VLD = DV + 8; // padded rows: 16-byte aligned, no bank conflicts
  static constexpr bool usable = TensorCoreType<typename Cfg::T>::value && D % 16 == 0 &&
                                 DV % 16 == 0 && BQ % 16 == 0;
  static constexpr int bytes = 2 * 2 * BK * (KLD + VLD); // two buffers of K and V
  static_assert(!usable || bytes <= kSharedBudget, "window MMA tiles exceed 48 KB of shared memory");
};

/// Waits until at most N committed cp.async groups of this thread are pending.
template <int N> __device__ __forceinline__ void windowCpAsyncWait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/// 8 consecutive 16-bit elements into shared memory: cp.async when the source
/// is 16-byte aligned (any strides stay legal), registers otherwise, zeros
/// when invalid.
template <class T> __device__ __forceinline__ void windowCopy8(T *dst, const T *src, bool valid) {
  if (!valid) {
    *reinterpret_cast<uint4 *>(dst) = make_uint4(0u, 0u, 0u, 0u);
  } else if ((reinterpret_cast<unsigned long long>(src) & 15ull) == 0) {
    cpAsync16(dst, src);
  } else {
#pragma unroll
    for (int c = 0; c < 8; ++c)
      dst[c] = src[c];
  }
}

/// Keys and values k0 .. k0+BK-1 into one stage (rows from hiKey on are zeros,
/// so masked columns multiply finite values), then one commit group.
template <class Cfg>
__device__ __forceinline__ void windowStage(const MuseParams &p, int kh, int k0, int hiKey,
                                            typename Cfg::T *ks, typename Cfg::T *vs) {
  using Tl = WindowMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, BK = Tl::BK, KC = D / 8, VC = DV / 8;
  const T *k = static_cast<const T *>(p.k);
  const T *v = static_cast<const T *>(p.v);
  for (int e = threadIdx.x; e < BK * KC; e += Tl::THREADS) {
    const int r = e / KC, c = 8 * (e - r * KC);
    const bool valid = k0 + r < hiKey;
    windowCopy8<T>(ks + r * Tl::KLD + c, k + (valid ? kRow(p, kh, k0 + r) + c : 0), valid);
  }
  for (int e = threadIdx.x; e < BK * VC; e += Tl::THREADS) {
    const int r = e / VC, c = 8 * (e - r * VC);
    const bool valid = k0 + r < hiKey;
    windowCopy8<T>(vs + r * Tl::VLD + c, v + (valid ? vRow(p, kh, k0 + r) + c : 0), valid);
  }
  cpAsyncCommit();
}

/// Grid (ceil(N/BQ), B*H), block WindowMmaTiles<Cfg>::THREADS; requires usable.
template <class Cfg> __device__ void causal_window_mma(const MuseParams &p) {
  using Tl = WindowMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, S = Cfg::BLOCK_SIZE, W = Cfg::WINDOW_BLOCKS;
  constexpr int BQ = Tl::BQ, BK = Tl::BK, KLD = Tl::KLD, VLD = Tl::VLD;
  constexpr int NT = DV / 8, KD = D / 16, SN = BK / 8;
  __shared__ __align__(16) T kst[2][BK * KLD];
  __shared__ __align__(16) T vst[2][BK * VLD];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int N = p.N;
  const int t0 = blockIdx.x * BQ;
  const int tq = cmin(BQ, N - t0);
  const int lo = windowBegin<S, W>(t0); // shared by the tile: BQ divides S
  const int hiKey = t0 + tq;                 // exclusive: the last query's own key is the last one
  const int rowFirst = t0 + 16 * warp;       // this warp's first query
  const int rowLast = rowFirst + 15;         // keys past it are masked for the whole warp
  const int qa = rowFirst + g, qb = qa + 8;  // the two query positions of this lane
  const bool live = rowFirst < hiKey;        // uniform per warp
  const T *q = static_cast<const T *>(p.q);

  // Q fragments for the whole loop (rows past N are zero and never written).
  unsigned qf[KD][4];
  {
    const bool va = qa < hiKey, vb = qb < hiKey;
    const T *ra = q + (va ? qRow(p, hi.b, hi.h, qa) : 0);
    const T *rb = q + (vb ? qRow(p, hi.b, hi.h, qb) : 0);
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      const int d = 16 * kk + 2 * t;
      qf[kk][0] = va ? ldPair(ra + d) : 0u;
      qf[kk][1] = vb ? ldPair(rb + d) : 0u;
      qf[kk][2] = va ? ldPair(ra + d + 8) : 0u;
      qf[kk][3] = vb ? ldPair(rb + d + 8) : 0u;
    }
  }
  float o[NT][4];
  zeroFragments(o);
  // Running max (in logit units) and this lane's part of the row sums.
  float ma = -kInf(), mb = -kInf(), la = 0.f, lb = 0.f;
  const float sl2 = p.scale * 1.4426950408889634f; // logits to the log2 domain

  const int nTiles = cdiv(hiKey - lo, BK);
  windowStage<Cfg>(p, hi.kh, lo, hiKey, kst[0], vst[0]);
  for (int it = 0; it < nTiles; ++it) {
    const int k0 = lo + it * BK;
    if (it + 1 < nTiles) { // the next tile flies while this one is used
      windowStage<Cfg>(p, hi.kh, k0 + BK, hiKey, kst[(it + 1) & 1], vst[(it + 1) & 1]);
      windowCpAsyncWait<1>();
    } else {
      windowCpAsyncWait<0>();
    }
    __syncthreads(); // tile it is visible to every warp
    const T *ks = kst[it & 1], *vs = vst[it & 1];
    if (live && k0 <= rowLast) {
      // S = Q·Kᵀ over the 16-key groups that reach this warp's rows.
      float s[SN][4];
      zeroFragments(s);
#pragma unroll
      for (int np = 0; np < SN / 2; ++np) {
        if (k0 + 16 * np > rowLast)
          break;
        const T *kr = ks + (16 * np + (lane & 7) + ((lane >> 4) << 3)) * KLD + ((lane >> 3) & 1) * 8;
#pragma unroll
        for (int kk = 0; kk < KD; ++kk) {
          unsigned b[4];
          ldsmX4(b, kr + 16 * kk);
          mma16816<T>(s[2 * np], qf[kk], b[0], b[1]);
          mma16816<T>(s[2 * np + 1], qf[kk], b[2], b[3]);
        }
      }
      // Causal mask where the tile reaches past the warp's first query (this
      // also masks the zero rows from hiKey on and every skipped group).
      if (k0 + BK - 1 > rowFirst) {
#pragma unroll
        for (int j = 0; j < SN; ++j)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int key = k0 + 8 * j + 2 * t + c;
            if (key > qa)
              s[j][c] = -kInf();
            if (key > qb)
              s[j][2 + c] = -kInf();
          }
      }
      float mxa = ma, mxb = mb;
#pragma unroll
      for (int j = 0; j < SN; ++j) {
        mxa = fmaxf(mxa, fmaxf(s[j][0], s[j][1]));
        mxb = fmaxf(mxb, fmaxf(s[j][2], s[j][3]));
      }
#pragma unroll
      for (int off = 1; off <= 2; off <<= 1) {
        mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, off));
        mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, off));
      }
      const float na = safeMax(mxa) * sl2, nb = safeMax(mxb) * sl2;
      // The first tile of a row has nothing to rescale (o and l are zero).
      const float aa = ma == -kInf() ? 0.f : exp2f(fmaf(ma, sl2, -na));
      const float ab = mb == -kInf() ? 0.f : exp2f(fmaf(mb, sl2, -nb));
      ma = mxa;
      mb = mxb;
      float pa = 0.f, pb = 0.f;
#pragma unroll
      for (int j = 0; j < SN; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          s[j][c] = exp2f(fmaf(s[j][c], sl2, -na));
          s[j][2 + c] = exp2f(fmaf(s[j][2 + c], sl2, -nb));
          pa += s[j][c];
          pb += s[j][2 + c];
        }
      la = fmaf(la, aa, pa);
      lb = fmaf(lb, ab, pb);
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        o[n][0] *= aa;
        o[n][1] *= aa;
        o[n][2] *= ab;
        o[n][3] *= ab;
      }
      // O += P·V: the S accumulators of two 8-key halves are P's A fragment.
#pragma unroll
      for (int kk = 0; kk < SN / 2; ++kk) {
        if (k0 + 16 * kk > rowLast)
          break;
        const unsigned pf[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int n = 0; n < NT; n += 2) {
          unsigned b[4];
          loadBTrans<VLD, T>(b, vs, 16 * kk, 8 * n, lane);
          mma16816<T>(o[n], pf, b[0], b[1]);
          mma16816<T>(o[n + 1], pf, b[2], b[3]);
        }
      }
    }
    __syncthreads(); // every warp is done with this stage before it is refilled
  }
  if (!live)
    return;
#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    la += __shfl_xor_sync(0xffffffffu, la, off);
    lb += __shfl_xor_sync(0xffffffffu, lb, off);
  }
  // Every live row saw its own key, so l > 0 and m is finite.
  const float ia = 1.f / la, ib = 1.f / lb;
  if (qa < hiKey) {
    float *out = p.o + oRow(p, hi.b, hi.h, qa);
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      out[8 * n + 2 * t] = o[n][0] * ia;
      out[8 * n + 2 * t + 1] = o[n][1] * ia;
    }
  }
  if (qb < hiKey) {
    float *out = p.o + oRow(p, hi.b, hi.h, qb);
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      out[8 * n + 2 * t] = o[n][2] * ib;
      out[8 * n + 2 * t + 1] = o[n][3] * ib;
    }
  }
  if (t == 0) {
    const long long at = (long long)bh * N;
    if (qa < hiKey) {
      const float lse = ma * p.scale + logf(la);
      p.run_lse[at + qa] = lse;
      if (p.lse)
        p.lse[at + qa] = lse;
    }
    if (qb < hiKey) {
      const float lse = mb * p.scale + logf(lb);
      p.run_lse[at + qb] = lse;
      if (p.lse)
        p.lse[at + qb] = lse;
    }
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_CAUSAL_WINDOW_MMA_CUH
