//===- causal_window_mma.cuh - The exact causal window on the tensor cores ===//
//
// The 16-bit (bf16/f16) path of causal_window (ALGORITHM.md §4): query t of
// block b = t/S attends exactly to the keys [max(0, (b-w+1)S), t].
//
// A flash-attention forward. A block takes BQ = min(128, S) consecutive
// queries (64 when D + DV > 128, to keep registers for two blocks per SM);
// BQ divides S, so the tile never straddles a causal block and every query
// of it shares the window's first key. Its warps own 16·MT query rows each
// (MT = 1: two 16-row tiles a warp measured slower on the H100, bench/NOTES.md
// version 11) and walk the window in key tiles of BK that all warps share:
//   K and V tiles are staged in shared memory by cp.async, double buffered
//             (tile i+1 is in flight while tile i is used),
//   S = Q·Kᵀ  mma.sync m16n8k16 (Q exact in T as A fragments held for the
//             whole loop; K's B fragments by ldmatrix),
//   online softmax in the log2 domain (scale·log2 e folded into one FMA
//             before a flush-to-zero exp2), the causal mask only on tiles
//             that reach past a warp's first query; the products run over
//             the whole tile with the k-steps outer, so every accumulator of
//             the tile is an independent chain for the tensor pipe,
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
  static constexpr int MT = 1;                  // 16-row m-tiles a warp owns
  static constexpr int WARPS = BQ / (16 * MT), THREADS = 32 * WARPS;
  static constexpr int BK = kWide ? 32 : 64;    // keys per staged tile
  static constexpr int KLD = D + 8, VLD = DV + 8; // padded rows: 16-byte aligned, no bank conflicts
  static constexpr bool usable = TensorCoreType<typename Cfg::T>::value && D % 16 == 0 &&
                                 DV % 16 == 0 && BQ % (16 * MT) == 0;
  static constexpr int bytes = 2 * 2 * BK * (KLD + VLD); // two buffers of K and V
  static_assert(!usable || bytes <= kSharedBudget, "window MMA tiles exceed 48 KB of shared memory");
};

/// 2^x with subnormal results flushed to zero (one MUFU.EX2, no range
/// fix-up): the softmax weights of the flash kernels, where a weight below
/// 2^-126 of the row maximum is zero to every digit that reaches the output.
__device__ __forceinline__ float exp2Ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

/// out[0], out[1] = a, b: one 8-byte store when out is 8-byte aligned (any
/// strides stay legal).
__device__ __forceinline__ void storePair(float *out, float a, float b) {
  if ((reinterpret_cast<unsigned long long>(out) & 7ull) == 0) {
    *reinterpret_cast<float2 *>(out) = make_float2(a, b);
  } else {
    out[0] = a;
    out[1] = b;
  }
}

/// A fragments (mma16816's a0..a3) of a warp's 16 rows over 16·KS columns,
/// straight from global memory, for operands held in registers for a whole
/// loop: ra is this lane's row g, rb its row g + 8 (null: a row past the
/// data, zeros).
template <int KS, class T>
__device__ __forceinline__ void loadRowFragments(unsigned (&f)[KS][4], const T *ra, const T *rb, int t) {
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    const int d = 16 * kk + 2 * t;
    f[kk][0] = ra ? ldPair(ra + d) : 0u;
    f[kk][1] = rb ? ldPair(rb + d) : 0u;
    f[kk][2] = ra ? ldPair(ra + d + 8) : 0u;
    f[kk][3] = rb ? ldPair(rb + d + 8) : 0u;
  }
}

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

/// The rows of one head as the window kernels read them: row r at
/// base + r * stride elements. The window's launches see the whole sequence
/// (seg_count == 0), where qRow, kRow, vRow and doRow are of this form, so the
/// per-tile staging is one multiply-add a copy. `aligned`: base and stride
/// keep every row 16-byte aligned (cp.async throughout).
template <class T> struct WindowRows {
  const T *base;
  long long stride;
  bool aligned;
  __device__ WindowRows(const void *data, long long rowZero, long long rowStride)
      : base(static_cast<const T *>(data) + rowZero), stride(rowStride),
        aligned(((reinterpret_cast<unsigned long long>(base) | static_cast<unsigned long long>(rowStride) *
                                                                     sizeof(T)) & 15ull) == 0) {}
};

/// Rows r0 .. r0+ROWS-1 of `rows` (C columns) into a tile of row pitch LD
/// (rows from r0 + n on are zeros), by cp.async where aligned; the caller
/// commits and waits.
template <class T, int C, int LD, int ROWS, int THREADS>
__device__ __forceinline__ void windowStageRows(T *dst, const WindowRows<T> &rows, int r0, int n) {
  constexpr int CC = C / 8;
  for (int e = threadIdx.x; e < ROWS * CC; e += THREADS) {
    const int r = e / CC, c = 8 * (e - r * CC);
    T *to = dst + r * LD + c;
    if (r >= n) {
      *reinterpret_cast<uint4 *>(to) = make_uint4(0u, 0u, 0u, 0u);
    } else {
      const T *from = rows.base + (long long)(r0 + r) * rows.stride + c;
      if (rows.aligned) {
        cpAsync16(to, from);
      } else {
#pragma unroll
        for (int x = 0; x < 8; ++x)
          to[x] = from[x];
      }
    }
  }
}

/// Grid (ceil(N/BQ), B*H), block Tl::THREADS; requires Tl::usable.
template <class Cfg, class Tl = WindowMmaTiles<Cfg>> __device__ void causal_window_mma(const MuseParams &p) {
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, S = Cfg::BLOCK_SIZE, W = Cfg::WINDOW_BLOCKS;
  constexpr int BQ = Tl::BQ, BK = Tl::BK, KLD = Tl::KLD, VLD = Tl::VLD, MT = Tl::MT;
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
  const int rowFirst = t0 + 16 * MT * warp;  // this warp's first query
  const int rowLast = rowFirst + 16 * MT - 1; // keys past it are masked for the whole warp
  const bool live = rowFirst < hiKey;        // uniform per warp
  const T *q = static_cast<const T *>(p.q);
  const WindowRows<T> kRows(p.k, kRow(p, hi.kh, 0), p.k_sm), vRows(p.v, vRow(p, hi.kh, 0), p.v_sm);
  // Keys and values k0 .. k0+BK-1 into stage buf (rows from hiKey on are
  // zeros, so masked columns multiply finite values), one commit group.
  auto stage = [&](int k0, int buf) {
    windowStageRows<T, D, KLD, BK, Tl::THREADS>(kst[buf], kRows, k0, hiKey - k0);
    windowStageRows<T, DV, VLD, BK, Tl::THREADS>(vst[buf], vRows, k0, hiKey - k0);
    cpAsyncCommit();
  };

  // Q fragments for the whole loop (rows past N are zero and never written);
  // m-tile mt holds the queries rowFirst + 16 mt + g (a) and + 8 (b).
  unsigned qf[MT][KD][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int qa = rowFirst + 16 * mt + g, qb = qa + 8;
    loadRowFragments<KD>(qf[mt], qa < hiKey ? q + qRow(p, hi.b, hi.h, qa) : nullptr,
                         qb < hiKey ? q + qRow(p, hi.b, hi.h, qb) : nullptr, t);
  }
  float o[MT][NT][4];
  // Running max (in logit units) and this lane's part of the row sums, rows a and b of each m-tile.
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    zeroFragments(o[mt]);
    m[mt][0] = m[mt][1] = -kInf();
    l[mt][0] = l[mt][1] = 0.f;
  }
  const float sl2 = p.scale * 1.4426950408889634f; // logits to the log2 domain

  const int nTiles = cdiv(hiKey - lo, BK);
  stage(lo, 0);
  for (int it = 0; it < nTiles; ++it) {
    const int k0 = lo + it * BK;
    if (it + 1 < nTiles) { // the next tile flies while this one is used
      stage(k0 + BK, (it + 1) & 1);
      windowCpAsyncWait<1>();
    } else {
      windowCpAsyncWait<0>();
    }
    __syncthreads(); // tile it is visible to every warp
    const T *ks = kst[it & 1], *vs = vst[it & 1];
    if (live && k0 <= rowLast) {
      // S = Q·Kᵀ over the whole tile, k-steps outer so that the 2·SN·MT
      // accumulators form independent chains (groups past the warp's rows are
      // masked below); each K fragment serves all MT m-tiles.
      float s[MT][SN][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        zeroFragments(s[mt]);
      const T *kr = ks + ((lane & 7) + ((lane >> 4) << 3)) * KLD + ((lane >> 3) & 1) * 8;
#pragma unroll
      for (int kk = 0; kk < KD; ++kk)
#pragma unroll
        for (int np = 0; np < SN / 2; ++np) {
          unsigned b[4];
          ldsmX4(b, kr + 16 * np * KLD + 16 * kk);
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            mma16816<T>(s[mt][2 * np], qf[mt][kk], b[0], b[1]);
            mma16816<T>(s[mt][2 * np + 1], qf[mt][kk], b[2], b[3]);
          }
        }
      // Causal mask where the tile reaches past the warp's first query (this
      // also masks the zero rows from hiKey on and every skipped group).
      const bool diagonal = k0 + BK - 1 > rowFirst;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const int qa = rowFirst + 16 * mt + g, qb = qa + 8;
        if (diagonal) {
#pragma unroll
          for (int j = 0; j < SN; ++j)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              const int key = k0 + 8 * j + 2 * t + c;
              if (key > qa)
                s[mt][j][c] = -kInf();
              if (key > qb)
                s[mt][j][2 + c] = -kInf();
            }
        }
        float mxa = m[mt][0], mxb = m[mt][1];
#pragma unroll
        for (int j = 0; j < SN; ++j) {
          mxa = fmaxf(mxa, fmaxf(s[mt][j][0], s[mt][j][1]));
          mxb = fmaxf(mxb, fmaxf(s[mt][j][2], s[mt][j][3]));
        }
#pragma unroll
        for (int off = 1; off <= 2; off <<= 1) {
          mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, off));
          mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, off));
        }
        const float na = safeMax(mxa) * sl2, nb = safeMax(mxb) * sl2;
        // The first tile of a row has nothing to rescale (o and l are zero).
        const float aa = m[mt][0] == -kInf() ? 0.f : exp2Ftz(fmaf(m[mt][0], sl2, -na));
        const float ab = m[mt][1] == -kInf() ? 0.f : exp2Ftz(fmaf(m[mt][1], sl2, -nb));
        m[mt][0] = mxa;
        m[mt][1] = mxb;
        float pa = 0.f, pb = 0.f;
#pragma unroll
        for (int j = 0; j < SN; ++j)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            s[mt][j][c] = exp2Ftz(fmaf(s[mt][j][c], sl2, -na));
            s[mt][j][2 + c] = exp2Ftz(fmaf(s[mt][j][2 + c], sl2, -nb));
            pa += s[mt][j][c];
            pb += s[mt][j][2 + c];
          }
        l[mt][0] = fmaf(l[mt][0], aa, pa);
        l[mt][1] = fmaf(l[mt][1], ab, pb);
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          o[mt][n][0] *= aa;
          o[mt][n][1] *= aa;
          o[mt][n][2] *= ab;
          o[mt][n][3] *= ab;
        }
      }
      // O += P·V: the S accumulators of two 8-key halves are P's A fragment;
      // each V fragment serves all MT m-tiles.
#pragma unroll
      for (int kk = 0; kk < SN / 2; ++kk) {
        if (k0 + 16 * kk > rowLast)
          break;
        unsigned pf[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          pf[mt][0] = pack2<T>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          pf[mt][1] = pack2<T>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          pf[mt][2] = pack2<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          pf[mt][3] = pack2<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int n = 0; n < NT; n += 2) {
          unsigned b[4];
          loadBTrans<VLD, T>(b, vs, 16 * kk, 8 * n, lane);
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            mma16816<T>(o[mt][n], pf[mt], b[0], b[1]);
            mma16816<T>(o[mt][n + 1], pf[mt], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads(); // every warp is done with this stage before it is refilled
  }
  if (!live)
    return;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    float la = l[mt][0], lb = l[mt][1];
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      la += __shfl_xor_sync(0xffffffffu, la, off);
      lb += __shfl_xor_sync(0xffffffffu, lb, off);
    }
    // Every live row saw its own key, so l > 0 and m is finite.
    const int qa = rowFirst + 16 * mt + g, qb = qa + 8;
    const float ia = 1.f / la, ib = 1.f / lb;
    if (qa < hiKey) {
      float *out = p.o + oRow(p, hi.b, hi.h, qa);
#pragma unroll
      for (int n = 0; n < NT; ++n)
        storePair(out + 8 * n + 2 * t, o[mt][n][0] * ia, o[mt][n][1] * ia);
    }
    if (qb < hiKey) {
      float *out = p.o + oRow(p, hi.b, hi.h, qb);
#pragma unroll
      for (int n = 0; n < NT; ++n)
        storePair(out + 8 * n + 2 * t, o[mt][n][2] * ib, o[mt][n][3] * ib);
    }
    if (t == 0) {
      const long long at = (long long)bh * N;
      if (qa < hiKey) {
        const float lse = m[mt][0] * p.scale + logf(la);
        p.run_lse[at + qa] = lse;
        if (p.lse)
          p.lse[at + qa] = lse;
      }
      if (qb < hiKey) {
        const float lse = m[mt][1] * p.scale + logf(lb);
        p.run_lse[at + qb] = lse;
        if (p.lse)
          p.lse[at + qb] = lse;
      }
    }
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_CAUSAL_WINDOW_MMA_CUH
