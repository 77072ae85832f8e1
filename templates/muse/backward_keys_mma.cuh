//===- backward_keys_mma.cuh - Order-0 backward of the keys on the tensor cores ===//
//
// The 16-bit (bf16/f16, D + Dv <= 128) path of backward_keys.cuh's keysFar0:
// the same far-pair gradients of the keys of cluster j,
//   W  = e^{K Cᵀ - lnm}               (keys x query clusters; 0 for near, empty, absent pairs)
//   WA = W ∘ (K GKᵀ + V GVᵀ + off)    (a_li = gL + gK.kc_l + gV.vc_l)
//   dk += W GK + WA C,  dv += W GV,  dqbar[i, j] (+)= WAᵀ K,
// with C the query centroids and gL, GK, GV the pair sums of bwd_pairs. A
// block takes the keys of j in chunks of KT = 64 (a warp per 16 keys) and
// meets the query clusters IT = 16 at a time; every product is an mma.sync
// m16n8k16 with fp32 accumulators:
//   K and V are exact in T (A fragments by ldmatrix);
//   C, GK, GV are fp32: staged as a pair of T tiles hi + lo (split2), so the
//     logits K Cᵀ and the a_li, where a difference of nearby numbers is
//     taken, keep about 16 significant bits (two products each);
//   W and WA are rounded to T as A fragments of dk, dv (against hi + lo);
//   WA goes through shared memory as hi + lo for dqbar = WAᵀ K (Kᵀ by
//     ldmatrix.trans), the sum over the chunk's keys inside the product.
// Rows past the cluster's keys get W = 0. Every sum runs in a fixed order:
// reruns are bit-identical. Grid (CK, B*Hkv), block kBwdThreads.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_KEYS_MMA_CUH
#define MUSE_TEMPLATES_BACKWARD_KEYS_MMA_CUH

#include "muse/backward_common.cuh"
#include "muse/backward_window_mma.cuh"

namespace muse {

template <class Cfg> struct KeyMmaTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV;
  static constexpr int KT = 16 * kBwdWarps, IT = 16; // keys per chunk, query clusters per tile
  static constexpr int KLD = D + 8, VLD = DV + 8, WLD = IT + 8; // padded: 16-byte rows, no bank conflicts
  /// Query clusters whose pair terms (ln-mass, off) are loaded at once: all
  /// of them once a head up to 128 (whole tiles: +inf past CQ), else a
  /// group of 128 every 8 tiles.
  static constexpr int PC = Cfg::CQ < 128 ? cdiv(Cfg::CQ, IT) * IT : 128;
  static constexpr bool usable = TensorCoreType<typename Cfg::T>::value && D % 16 == 0 && DV % 16 == 0 &&
                                 D + DV <= 128;
  static constexpr int bytes = 2 * (KT * (KLD + VLD) + 2 * IT * (2 * KLD + VLD) + 2 * KT * WLD) + 8 * PC;
  static_assert(!usable || bytes <= kSharedBudget, "key tiles exceed 48 KB of shared memory");
};

/// Rows i0 .. i0+IT-1 of a per-cluster fp32 table (row(i) points at C
/// floats; zeros past CQ) as the T pair hi + lo. Every load is issued before
/// the first store (stores to shared memory would otherwise order each load
/// behind the previous element's store).
template <class Cfg, int C, int LD, class Row>
__device__ __forceinline__ void keysStageSplit(typename Cfg::T *hi, typename Cfg::T *lo, int i0, Row row) {
  using T = typename Cfg::T;
  constexpr int IT = KeyMmaTiles<Cfg>::IT, H = C / 2, E = IT * H / kBwdThreads;
  static_assert(E * kBwdThreads == IT * H, "whole pairs a thread");
  float2 v[E];
#pragma unroll
  for (int k = 0; k < E; ++k) {
    const int e = threadIdx.x + k * kBwdThreads, ii = e / H, d = 2 * (e - ii * H), i = i0 + ii;
    v[k] = make_float2(0.f, 0.f); // rows of bwd_pairs are 1 + D + Dv floats: no vector alignment
    if (i < Cfg::CQ) {
      const float *src = row(i) + d;
      v[k] = make_float2(src[0], src[1]);
    }
  }
#pragma unroll
  for (int k = 0; k < E; ++k) {
    const int e = threadIdx.x + k * kBwdThreads, ii = e / H, d = 2 * (e - ii * H);
    unsigned h, l;
    split2<T>(v[k].x, v[k].y, h, l);
    *reinterpret_cast<unsigned *>(hi + ii * LD + d) = h;
    *reinterpret_cast<unsigned *>(lo + ii * LD + d) = l;
  }
}

/// Per query cluster i0 + ii (ii < IT), one thread each: the pair
/// (i, j)'s ln-mass into lnmS (+inf where the pair has no stage-1 term: near,
/// empty or absent, so that W is exactly 0) and off_i = gL - gK.kbar -
/// gV.vbar (formed by backward_pairs at order 0) into offS. `pairs` points
/// at bwd_pairs' pair (0, j) of head bh.
template <class Cfg, int IT>
__device__ __forceinline__ void keysPairTerms(const MuseParams &p, int bh, int j, int i0, const float *pairs,
                                              float *lnmS, float *offS) {
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  static_assert(Cfg::ORDER == 0, "off_ij is in bwd_pairs at order 0 only");
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  for (int ii = threadIdx.x; ii < IT; ii += kBwdThreads) {
    const int i = i0 + ii;
    float lnm = kInf(), off = 0.f;
    if (i < CQ && qoff[i + 1] > qoff[i] && !isNearPair<Cfg>(p, bh, i, j)) {
      const float ln = p.summaries[(((long long)bh * CQ + i) * CK + j) * F];
      if (ln != -kInf()) {
        lnm = ln;
        off = pairs[(long long)i * CK * F];
      }
    }
    lnmS[ii] = lnm;
    offS[ii] = off;
  }
}

/// Order 0, far pairs of key cluster j of kv head kh (keysFar0's contract:
/// dk, dv stored, or added in causal levels and for later heads of the group;
/// bwd_dqbar[i, j] stored by the first chunk, added by later ones; j has keys,
/// backward_keys handles empty clusters).
template <class Cfg> __device__ void keysFar0Mma(const MuseParams &p, int j, int kh) {
  using Tl = KeyMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, F = 1 + D + DV;
  constexpr int KT = Tl::KT, IT = Tl::IT, KLD = Tl::KLD, VLD = Tl::VLD, WLD = Tl::WLD, PC = Tl::PC;
  constexpr int NK = D / 8, NV = DV / 8;
  static_assert(PC % IT == 0, "tiles of query clusters within one group of pair terms");
  __shared__ __align__(16) T ks[KT * KLD];
  __shared__ __align__(16) T vs[KT * VLD];
  __shared__ __align__(16) T cHi[IT * KLD], cLo[IT * KLD], gkHi[IT * KLD], gkLo[IT * KLD];
  __shared__ __align__(16) T gvHi[IT * VLD], gvLo[IT * VLD];
  __shared__ __align__(16) T waHi[KT * WLD], waLo[KT * WLD];
  __shared__ float lnmAll[PC], offAll[PC];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int b = kh / p.Hkv, hk = kh - b * p.Hkv, group = p.H / p.Hkv;
  const int *koff = p.k_offsets + (long long)kh * (CK + 1);
  const int kstart = koff[j], kcount = koff[j + 1] - kstart;
  const int *kperm = p.k_perm + (long long)kh * p.M + kstart;
  const T *kp = static_cast<const T *>(p.k), *vp = static_cast<const T *>(p.v);
  const int ra = 16 * warp + g, rb = ra + 8; // this lane's two key rows of the chunk

  for (int gh = 0; gh < group; ++gh) {
    const int bh = b * p.H + hk * group + gh;
    const float *pairs = p.bwd_pairs + ((long long)bh * CQ * CK + j) * F; // + i*CK*F: pair (i, j)
    const float *cen = p.q_centroids + (long long)bh * CQ * D;
    // dk, dv start from zero only for the first head of an acausal call.
    const bool add = p.seg_count > 0 || gh > 0;
    // Every tile of every chunk stages column j of the pair sums, the
    // pairs' ln-masses and the centroids after a barrier: fetched into L2
    // once here, those loads wait for L2 rather than DRAM.
    const float *lnm = p.summaries + ((long long)bh * CQ * CK + j) * F; // + i*CK*F: pair (i, j)
    prefetchRowsL2(CQ, F * 4, [&](int i) { return pairs + (long long)i * CK * F; }, tid, kBwdThreads);
    prefetchRowsL2(CQ, 4, [&](int i) { return lnm + (long long)i * CK * F; }, tid, kBwdThreads);
    prefetchRowsL2(1, CQ * D * 4, [&](int) { return cen; }, tid, kBwdThreads);
    // The pair terms of every query cluster, read after the first tile's
    // barrier (the previous head's tiles read them before their last barrier).
    if (PC >= CQ)
      keysPairTerms<Cfg, PC>(p, bh, j, 0, pairs, lnmAll, offAll);
    for (int k0 = 0; k0 < kcount; k0 += KT) {
      const int kn = cmin(KT, kcount - k0);
      if (add) { // the chunk's dk, dv rows, read back by the epilogue
        prefetchRowsL2(kn, D * 4, [&](int r) { return p.dk + dkRowOff(p, kh, kperm[k0 + r]); }, tid, kBwdThreads);
        prefetchRowsL2(kn, DV * 4, [&](int r) { return p.dv + dvRowOff(p, kh, kperm[k0 + r]); }, tid, kBwdThreads);
      }
      __syncthreads(); // the previous chunk's K, V and WA are no longer read
      bwdStageRows<T, D, KLD, kBwdThreads>(ks, KT, kn, kp, [&](int r) { return kRow(p, kh, kperm[k0 + r]); });
      bwdStageRows<T, DV, VLD, kBwdThreads>(vs, KT, kn, vp, [&](int r) { return vRow(p, kh, kperm[k0 + r]); });
      cpAsyncCommit();
      float dk[NK][4], dv[NV][4];
      zeroFragments(dk);
      zeroFragments(dv);
      for (int i0 = 0; i0 < CQ; i0 += IT) {
        __syncthreads(); // the previous tile's C, GK, GV, WA are no longer read
        keysStageSplit<Cfg, D, KLD>(cHi, cLo, i0, [&](int i) { return cen + (long long)i * D; });
        keysStageSplit<Cfg, D, KLD>(gkHi, gkLo, i0, [&](int i) { return pairs + (long long)i * CK * F + 1; });
        keysStageSplit<Cfg, DV, VLD>(gvHi, gvLo, i0,
                                     [&](int i) { return pairs + (long long)i * CK * F + 1 + D; });
        if (PC < CQ && i0 % PC == 0) // the group's first tile
          keysPairTerms<Cfg, PC>(p, bh, j, i0, pairs, lnmAll, offAll);
        const float *lnmS = lnmAll + i0 % PC, *offS = offAll + i0 % PC;
        cpAsyncWaitAll(); // K, V of the chunk (a no-op after the first tile)
        __syncthreads();
        // W and WA of this warp's 16 keys x IT clusters.
        // A warp whose 16 rows are all past the chunk's keys (small clusters:
        // short causal segments) skips its products; its WA rows are not read.
        if (16 * warp < kn) {
          float w[2][4] = {}, wa[2][4] = {};
          bwdRowProducts<D, KLD, KLD, 1>(w, ks, 16 * warp, cHi, lane);
          bwdRowProducts<D, KLD, KLD, 1>(w, ks, 16 * warp, cLo, lane);
          bwdRowProducts<D, KLD, KLD, 1>(wa, ks, 16 * warp, gkHi, lane);
          bwdRowProducts<D, KLD, KLD, 1>(wa, ks, 16 * warp, gkLo, lane);
          bwdRowProducts<DV, VLD, VLD, 1>(wa, vs, 16 * warp, gvHi, lane);
          bwdRowProducts<DV, VLD, VLD, 1>(wa, vs, 16 * warp, gvLo, lane);
#pragma unroll
          for (int n = 0; n < 2; ++n)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
              const int ii = 8 * n + 2 * t + (c & 1), r = c < 2 ? ra : rb;
              const float x = r < kn ? expf(w[n][c] - lnmS[ii]) : 0.f;
              w[n][c] = x;
              wa[n][c] = x * (wa[n][c] + offS[ii]);
            }
          // dk += W GK + WA C,  dv += W GV (W, WA rounded to T; GK, GV, C as hi + lo).
          bwdAccumulate<NK, KLD, 1>(dk, w, gkHi, lane);
          bwdAccumulate<NK, KLD, 1>(dk, w, gkLo, lane);
          bwdAccumulate<NK, KLD, 1>(dk, wa, cHi, lane);
          bwdAccumulate<NK, KLD, 1>(dk, wa, cLo, lane);
          bwdAccumulate<NV, VLD, 1>(dv, w, gvHi, lane);
          bwdAccumulate<NV, VLD, 1>(dv, w, gvLo, lane);
          // WA to shared memory as hi + lo for the product over the chunk's keys.
#pragma unroll
          for (int n = 0; n < 2; ++n)
#pragma unroll
            for (int half = 0; half < 2; ++half) {
              const int r = half ? rb : ra, col = 8 * n + 2 * t;
              unsigned h, l;
              split2<T>(wa[n][2 * half], wa[n][2 * half + 1], h, l);
              *reinterpret_cast<unsigned *>(waHi + r * WLD + col) = h;
              *reinterpret_cast<unsigned *>(waLo + r * WLD + col) = l;
            }
        }
        __syncthreads();
        // dqbarᵀ (D x IT) = Kᵀ WA over the chunk's keys (16-key groups that
        // hold one): a warp per 16 dims.
        for (int mt = warp; mt < D / 16; mt += kBwdWarps) {
          float acc[2][4] = {};
#pragma unroll
          for (int kk = 0; kk < KT / 16; ++kk) {
            if (16 * kk >= kn)
              break;
            unsigned a[4], bh4[4], bl4[4];
            loadATrans<KLD, T>(a, ks, 16 * mt, 16 * kk, lane);
            loadBTrans<WLD, T>(bh4, waHi, 16 * kk, 0, lane);
            loadBTrans<WLD, T>(bl4, waLo, 16 * kk, 0, lane);
            mmaTwoTiles<T>(acc, a, bh4);
            mmaTwoTiles<T>(acc, a, bl4);
          }
          // Later chunks add onto what the first stored: every old value
          // loaded before the first store.
          if (k0 > 0)
#pragma unroll
            for (int n = 0; n < 2; ++n)
#pragma unroll
              for (int c = 0; c < 4; ++c) {
                const int i = i0 + 8 * n + 2 * t + (c & 1), d = 16 * mt + g + (c < 2 ? 0 : 8);
                if (i < CQ)
                  acc[n][c] += p.bwd_dqbar[(((long long)bh * CQ + i) * CK + j) * D + d];
              }
#pragma unroll
          for (int n = 0; n < 2; ++n)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
              const int i = i0 + 8 * n + 2 * t + (c & 1), d = 16 * mt + g + (c < 2 ? 0 : 8);
              if (i < CQ)
                p.bwd_dqbar[(((long long)bh * CQ + i) * CK + j) * D + d] = acc[n][c];
            }
        }
      }
      // The chunk's dk, dv rows (this block is their one writer at this level).
      // Acausal without near field and with one head a group: the caller's
      // dk, dv in T when asked for (emit.cuh keysWriteOutput), else fp32.
      const bool toOut = Cfg::NEAR == 0 && p.out_dk && !p.causal && group == 1;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = half ? rb : ra;
        if (r >= kn)
          continue;
        const int l = kperm[k0 + r];
        if (toOut) {
          const long long ak = outDkRowOff(p, kh, l) + 2 * t, av = outDvRowOff(p, kh, l) + 2 * t;
#pragma unroll
          for (int n = 0; n < NK; ++n)
            storeOutPair<T>(p.out_dk, ak + 8 * n, dk[n][2 * half], dk[n][2 * half + 1]);
#pragma unroll
          for (int n = 0; n < NV; ++n)
            storeOutPair<T>(p.out_dv, av + 8 * n, dv[n][2 * half], dv[n][2 * half + 1]);
          continue;
        }
        float *dkr = p.dk + dkRowOff(p, kh, l), *dvr = p.dv + dvRowOff(p, kh, l);
#pragma unroll
        for (int n = 0; n < NK; ++n)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const float x = dk[n][2 * half + c];
            dkr[8 * n + 2 * t + c] = add ? dkr[8 * n + 2 * t + c] + x : x;
          }
#pragma unroll
        for (int n = 0; n < NV; ++n)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const float x = dv[n][2 * half + c];
            dvr[8 * n + 2 * t + c] = add ? dvr[8 * n + 2 * t + c] + x : x;
          }
      }
    }
  }
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_KEYS_MMA_CUH
