//===- backward_common.cuh - Warp-per-row helpers of the acausal backward -===//
//
// The backward kernels give one warp to one row (a query or a key) and spread
// its D (resp. Dv) components over the 32 lanes: lane t holds components
// t, t+32, ... (D and Dv are multiples of 32). Dot products are butterfly
// sums over the warp: every lane ends with the same bits, so control flow
// that depends on them stays uniform and every result is deterministic.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_BACKWARD_COMMON_CUH
#define MUSE_TEMPLATES_BACKWARD_COMMON_CUH

#include "muse/common.cuh"

namespace muse {

/// Threads of every backward kernel but backward_centroid (block D).
constexpr int kBwdThreads = 128;
constexpr int kBwdWarps = kBwdThreads / 32;

/// Sum over the 32 lanes; identical in every lane (xor butterfly: each step
/// adds the same two numbers on both partners).
__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// The lane's components of one row: x[a] = row[lane + 32a].
template <int W> struct Lanes {
  static_assert(W % 32 == 0, "the backward needs head and value dims that are multiples of 32");
  static constexpr int K = W / 32;
  float x[K];
  __device__ void zero() {
#pragma unroll
    for (int a = 0; a < K; ++a)
      x[a] = 0.f;
  }
  __device__ void loadF(const float *row, int lane) {
#pragma unroll
    for (int a = 0; a < K; ++a)
      x[a] = row[lane + 32 * a];
  }
  template <class T> __device__ void loadT(const void *base, long long off, int lane) {
#pragma unroll
    for (int a = 0; a < K; ++a)
      x[a] = loadf<T>(base, off + lane + 32 * a);
  }
  __device__ void store(float *row, int lane) const {
#pragma unroll
    for (int a = 0; a < K; ++a)
      row[lane + 32 * a] = x[a];
  }
  /// x += s * y
  __device__ void axpy(float s, const Lanes &y) {
#pragma unroll
    for (int a = 0; a < K; ++a)
      x[a] = fmaf(s, y.x[a], x[a]);
  }
  __device__ float dotWith(const Lanes &y) const {
    float s = 0.f;
#pragma unroll
    for (int a = 0; a < K; ++a)
      s = fmaf(x[a], y.x[a], s);
    return warpSum(s);
  }
};

/// The scaled query x_n = scale*q_n of head (b, h), as the forward forms it.
template <class Cfg>
__device__ __forceinline__ void loadScaledQuery(const MuseParams &p, const HeadIndex &hi, int n,
                                                int lane, Lanes<Cfg::D> &x) {
  const long long off = qRow(p, hi.b, hi.h, n);
#pragma unroll
  for (int a = 0; a < Lanes<Cfg::D>::K; ++a)
    x.x[a] = scaled(p, loadf<typename Cfg::T>(p.q, off + lane + 32 * a));
}

/// Flat [B*H, seq] index of query row n of head bh: the identity without a
/// view; in a causal segment view (p.seg_count > 0) the row's position in the
/// whole sequence, so per-position data the window kernels wrote (delta) and
/// the forward's final lse are read where the real query lies.
__device__ __forceinline__ long long globalRow(const MuseParams &p, int bh, long long n) {
  if (p.seg_count == 0)
    return (long long)bh * p.N + n;
  const int vb = bh / p.H, h = bh - vb * p.H;
  const int b = vb / p.seg_count, a = vb - b * p.seg_count;
  return ((long long)b * p.H + h) * p.seq_len + (long long)a * p.seg_stride + p.seg_qbase + n;
}

/// lse of query n of head bh: the caller's copy when given, else the forward's.
/// Causal views read run_lse, which after the forward holds the merged lse of
/// every position (the split-KV rule: every partial is differentiated against
/// the final lse and o, ALGORITHM.md section 5).
__device__ __forceinline__ float rowLse(const MuseParams &p, int bh, int n) {
  if (p.seg_count > 0)
    return p.run_lse[globalRow(p, bh, n)];
  const long long at = (long long)bh * p.N + n;
  return p.lse ? p.lse[at] : p.row_lse[at];
}

__device__ __forceinline__ float rowDLse(const MuseParams &p, int bh, int n) {
  return p.dlse ? p.dlse[globalRow(p, bh, n)] : 0.f;
}

/// Row offsets of dO, dq (query rows, view-aware like qRow) and dk, dv (key
/// rows of kv head kh, view-aware like kRow).
__device__ __forceinline__ long long doRow(const MuseParams &p, int b, int h, long long n) {
  return viewRow(p, b, n, p.do_sb, p.do_sn, p.seg_qbase) + h * p.do_sh;
}
__device__ __forceinline__ long long dqRow(const MuseParams &p, int b, int h, long long n) {
  return viewRow(p, b, n, p.dq_sb, p.dq_sn, p.seg_qbase) + h * p.dq_sh;
}
__device__ __forceinline__ long long dkRowOff(const MuseParams &p, int kh, long long m) {
  const int b = kh / p.Hkv;
  return viewRow(p, b, m, p.dk_sb, p.dk_sm, 0) + (kh - b * p.Hkv) * p.dk_sh;
}
__device__ __forceinline__ long long dvRowOff(const MuseParams &p, int kh, long long m) {
  const int b = kh / p.Hkv;
  return viewRow(p, b, m, p.dv_sb, p.dv_sm, 0) + (kh - b * p.Hkv) * p.dv_sh;
}
/// The same rows of the caller's dq, dk, dv in T (params.cuh out_dq ...):
/// written only by launches that see the whole call (no segment view).
__device__ __forceinline__ long long outDqRow(const MuseParams &p, int b, int h, long long n) {
  return b * p.out_dq_sb + h * p.out_dq_sh + n * p.out_dq_sn;
}
__device__ __forceinline__ long long outDkRowOff(const MuseParams &p, int kh, long long m) {
  const int b = kh / p.Hkv;
  return b * p.out_dk_sb + (kh - b * p.Hkv) * p.out_dk_sh + m * p.out_dk_sm;
}
__device__ __forceinline__ long long outDvRowOff(const MuseParams &p, int kh, long long m) {
  const int b = kh / p.Hkv;
  return b * p.out_dv_sb + (kh - b * p.Hkv) * p.out_dv_sh + m * p.out_dv_sm;
}

/// Whether key cluster j is one of the near clusters of query cluster i.
template <class Cfg> __device__ __forceinline__ bool isNearPair(const MuseParams &p, int bh, int i, int j) {
  if constexpr (Cfg::NEAR > 0) {
    const int *nl = p.near + ((long long)bh * Cfg::CQ + i) * Cfg::NEAR;
    for (int e = 0; e < Cfg::NEAR; ++e) {
      const int c = nl[e];
      if (c < 0)
        return false; // -1 pads follow the chosen clusters
      if (c == j)
        return true;
    }
  }
  return false;
}

} // namespace muse

#endif // MUSE_TEMPLATES_BACKWARD_COMMON_CUH
