//===- causal_window_mma.cuh - The exact causal window on the tensor cores ===//
//
// The 16-bit (bf16/f16) path of causal_window (ALGORITHM.md §4): query t of
// block b = t/S attends exactly to the keys [max(0, (b-w+1)S), t].
//
// Same grid as the fp32 kernel (a tile of BQ = min(32, S) consecutive queries
// per block, never straddling a causal block). The tile's queries form G =
// BQ/16 groups of 16 rows; the block's W warps are G groups × KS = W/G key
// splits: warp (g, ks) owns the 16 queries of group g and the 16-key steps
// ks, ks + KS, ... of the window. Each warp runs flash attention on its own:
//   S = Q·Kᵀ  mma.sync m16n8k16 (Q exact in T as A fragments held for the
//             whole loop; K's B fragments are consecutive pairs of a key row,
//             read straight from global memory / L2),
//   online softmax on the accumulator fragments (a row lives in a lane quad),
//   O += P·V  with P rounded to T as the A fragment (the S accumulators are
//             already in A's layout) and V staged per warp in shared memory
//             and read by ldmatrix.trans.
// The KS partial (m, l, O) of a row are then merged in a fixed order through
// shared memory, so the result is deterministic. Logits are scale·(q·k) with
// exact products and fp32 sums (the fp32 path rounds x = scale·q first); P in
// T costs ~2^-9 relative per weight, far inside the 16-bit tolerance.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_CAUSAL_WINDOW_MMA_CUH
#define MUSE_TEMPLATES_CAUSAL_WINDOW_MMA_CUH

#include "muse/common.cuh"
#include "muse/smem_gemm.cuh"

namespace muse {

template <class Cfg> struct WindowMmaTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV, THREADS = Cfg::THREADS;
  static constexpr int BQ = cmin(32, Cfg::BLOCK_SIZE); // as WindowTiles::BQ (the grid)
  static constexpr int WARPS = THREADS / 32;
  static constexpr int G = BQ / 16;             // query groups of 16 rows
  static constexpr int KS = WARPS / (G > 0 ? G : 1); // key splits
  static constexpr int VLD = DV + 8;            // padded row: 16-byte aligned, no bank conflicts
  static constexpr bool usable = TensorCoreType<typename Cfg::T>::value && D % 16 == 0 &&
                                 DV % 16 == 0 && G >= 1 && WARPS % G == 0 && KS >= 1;
  // The V stages are dead once every warp has left its key loop, so the merge
  // buffer of the partial outputs reuses their bytes.
  static constexpr int stageBytes = WARPS * 16 * VLD * 2, obufBytes = 4 * BQ * DV;
  static constexpr int rawBytes = stageBytes > obufBytes ? stageBytes : obufBytes;
  static constexpr int bytes = rawBytes + 4 * (2 * KS * BQ + 2 * BQ);
  static_assert(!usable || bytes <= kSharedBudget, "window MMA tiles exceed 48 KB of shared memory");
};

/// 8 consecutive 16-bit elements into shared memory (16-byte load when aligned).
template <class T> __device__ __forceinline__ void copy8(T *dst, const T *src, bool valid) {
  if (!valid) {
    *reinterpret_cast<uint4 *>(dst) = make_uint4(0, 0, 0, 0);
  } else if ((reinterpret_cast<unsigned long long>(src) & 15ull) == 0) {
    *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
  } else {
#pragma unroll
    for (int c = 0; c < 8; ++c)
      dst[c] = src[c];
  }
}

/// Grid (ceil(N/BQ), B*H), block THREADS; requires WindowMmaTiles<Cfg>::usable.
template <class Cfg> __device__ void causal_window_mma(const MuseParams &p) {
  using Tl = WindowMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, S = Cfg::BLOCK_SIZE, W = Cfg::WINDOW_BLOCKS;
  constexpr int BQ = Tl::BQ, KS = Tl::KS, VLD = Tl::VLD, NT = DV / 8, KD = D / 16;
  __shared__ __align__(16) unsigned char raw[Tl::rawBytes];
  T *const vstage = reinterpret_cast<T *>(raw);     // [WARPS][16][VLD] during the key loop
  float *const obuf = reinterpret_cast<float *>(raw); // [BQ][DV] during the merge
  __shared__ float mpart[KS][BQ], lpart[KS][BQ];
  __shared__ float mrow[BQ], lrow[BQ];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int grp = warp / KS, ks = warp - grp * KS;
  const int g = lane >> 2, t = lane & 3;
  const int bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int N = p.N;
  const int t0 = blockIdx.x * BQ;
  const int tq = cmin(BQ, N - t0);
  const int blk = t0 / S;
  const int lo = blk - W + 1 > 0 ? (blk - W + 1) * S : 0;
  const int r0 = 16 * grp;                 // first row of this warp's group in the tile
  const int qa = t0 + r0 + g, qb = qa + 8;  // the two query positions of this lane
  const int gEnd = cmin(t0 + r0 + 16, t0 + tq); // keys past the group's last query are masked
  const T *q = static_cast<const T *>(p.q);
  const T *k = static_cast<const T *>(p.k);
  const T *v = static_cast<const T *>(p.v);

  // Q fragments for the whole loop (rows past N are zero and never written).
  unsigned qf[KD][4];
  {
    const bool va = qa < t0 + tq, vb = qb < t0 + tq;
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
#pragma unroll
  for (int n = 0; n < NT; ++n)
    o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float ma = -kInf(), mb = -kInf(), la = 0.f, lb = 0.f; // rows qa, qb (l: this lane's part)
  const float scale = p.scale;
  T *vs = vstage + warp * 16 * VLD;

  for (int k0 = lo + 16 * ks; k0 < gEnd; k0 += 16 * KS) {
    // V rows k0..k0+15 into this warp's stage (rows past the range are zero).
    for (int e = lane; e < 16 * (DV / 8); e += 32) {
      const int r = e / (DV / 8), c = 8 * (e - r * (DV / 8));
      const bool valid = k0 + r < gEnd;
      copy8<T>(vs + r * VLD + c, v + (valid ? vRow(p, hi.kh, k0 + r) + c : 0), valid);
    }
    // S = Q·Kᵀ for keys k0 + 8j + g' (j = 0, 1): B fragments from key rows.
    float s[2][4];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
      const int key = k0 + 8 * j + g;
      const bool valid = key < gEnd;
      const T *kr = k + (valid ? kRow(p, hi.kh, key) : 0);
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
        const int d = 16 * kk + 2 * t;
        const unsigned b0 = valid ? ldPair(kr + d) : 0u, b1 = valid ? ldPair(kr + d + 8) : 0u;
        mma16816<T>(s[j], qf[kk], b0, b1);
      }
    }
    // Scale, causal mask (key <= query; keys past gEnd are past every query of the group).
    float mxa = ma, mxb = mb;
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int key = k0 + 8 * j + 2 * t + c;
        s[j][c] = key <= qa ? s[j][c] * scale : -kInf();
        s[j][2 + c] = key <= qb ? s[j][2 + c] * scale : -kInf();
        mxa = fmaxf(mxa, s[j][c]);
        mxb = fmaxf(mxb, s[j][2 + c]);
      }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      mxa = fmaxf(mxa, __shfl_xor_sync(0xffffffffu, mxa, off));
      mxb = fmaxf(mxb, __shfl_xor_sync(0xffffffffu, mxb, off));
    }
    const float aa = ma == -kInf() ? 0.f : expf(ma - mxa), ab = mb == -kInf() ? 0.f : expf(mb - mxb);
    ma = mxa;
    mb = mxb;
    const float sa = safeMax(mxa), sb = safeMax(mxb);
    float pa = 0.f, pb = 0.f;
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        s[j][c] = expf(s[j][c] - sa);
        s[j][2 + c] = expf(s[j][2 + c] - sb);
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
    // O += P·V: the S accumulators of the two key halves are P's A fragment.
    const unsigned pf[4] = {pack2<T>(s[0][0], s[0][1]), pack2<T>(s[0][2], s[0][3]),
                            pack2<T>(s[1][0], s[1][1]), pack2<T>(s[1][2], s[1][3])};
    __syncwarp();
#pragma unroll
    for (int n = 0; n < NT; n += 2) {
      unsigned b[4];
      loadBTrans<VLD, T>(b, vs, 0, 8 * n, lane);
      mma16816<T>(o[n], pf, b[0], b[1]);
      mma16816<T>(o[n + 1], pf, b[2], b[3]);
    }
    __syncwarp(); // the stage is rewritten by the next step
  }
#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    la += __shfl_xor_sync(0xffffffffu, la, off);
    lb += __shfl_xor_sync(0xffffffffu, lb, off);
  }

  // Merge the KS partials of each row in ascending ks (deterministic). The
  // barrier below also ends every warp's use of the V stages that obuf reuses.
  const int ra = r0 + g, rb = ra + 8;
  if (t == 0) {
    mpart[ks][ra] = ma;
    mpart[ks][rb] = mb;
    lpart[ks][ra] = la;
    lpart[ks][rb] = lb;
  }
  __syncthreads();
  float Ma = -kInf(), Mb = -kInf();
#pragma unroll
  for (int w = 0; w < KS; ++w) {
    Ma = fmaxf(Ma, mpart[w][ra]);
    Mb = fmaxf(Mb, mpart[w][rb]);
  }
  const float fa = ma == -kInf() ? 0.f : expf(ma - Ma), fb = mb == -kInf() ? 0.f : expf(mb - Mb);
  if (ks == 0 && t == 0) {
    float La = 0.f, Lb = 0.f;
#pragma unroll
    for (int w = 0; w < KS; ++w) {
      La += mpart[w][ra] == -kInf() ? 0.f : lpart[w][ra] * expf(mpart[w][ra] - Ma);
      Lb += mpart[w][rb] == -kInf() ? 0.f : lpart[w][rb] * expf(mpart[w][rb] - Mb);
    }
    mrow[ra] = Ma;
    mrow[rb] = Mb;
    lrow[ra] = La;
    lrow[rb] = Lb;
  }
#pragma unroll
  for (int w = 0; w < KS; ++w) {
    if (ks == w) {
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        const int c = 8 * n + 2 * t;
        float *pa_ = obuf + ra * DV + c, *pb_ = obuf + rb * DV + c;
        if (w == 0) {
          pa_[0] = o[n][0] * fa;
          pa_[1] = o[n][1] * fa;
          pb_[0] = o[n][2] * fb;
          pb_[1] = o[n][3] * fb;
        } else {
          pa_[0] += o[n][0] * fa;
          pa_[1] += o[n][1] * fa;
          pb_[0] += o[n][2] * fb;
          pb_[1] += o[n][3] * fb;
        }
      }
    }
    __syncthreads();
  }
  for (int e = threadIdx.x; e < tq * DV; e += Cfg::THREADS) {
    const int r = e / DV, c = e - r * DV;
    p.o[oRow(p, hi.b, hi.h, t0 + r) + c] = obuf[e] / lrow[r];
  }
  for (int r = threadIdx.x; r < tq; r += Cfg::THREADS) {
    const float lse = mrow[r] + logf(lrow[r]);
    const long long at = (long long)bh * N + t0 + r;
    p.run_lse[at] = lse;
    if (p.lse)
      p.lse[at] = lse;
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_CAUSAL_WINDOW_MMA_CUH
