//===- common.cuh - Element loads, head indexing and tiling helpers -------===//
//
// Shared by every MuSe kernel template. NVRTC-clean: only cuda_bf16.h and
// cuda_fp16.h. All element offsets are 64-bit: B*H*N*D can exceed 2^31.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_COMMON_CUH
#define MUSE_TEMPLATES_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "muse/params.cuh"

namespace muse {

/// Which points a k-means or sort kernel works on.
enum class Side { Query, Key };

__device__ __forceinline__ float kInf() { return __int_as_float(0x7f800000); }

/// Static shared memory a kernel may use (the limit without opt-in).
constexpr int kSharedBudget = 48 * 1024;

__device__ __forceinline__ float toFloat(float x) { return x; }
__device__ __forceinline__ float toFloat(__half x) { return __half2float(x); }
__device__ __forceinline__ float toFloat(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T> __device__ __forceinline__ float loadf(const void *base, long long i) {
  return toFloat(static_cast<const T *>(base)[i]);
}

/// Eight consecutive elements at element offset `off` of `base`, as floats:
/// one 16-byte load when T is 16-bit and the address is 16-byte aligned (any
/// strides stay legal), element loads otherwise.
template <class T> __device__ __forceinline__ void load8(const void *base, long long off, float (&x)[8]) {
  const T *ptr = static_cast<const T *>(base) + off;
  if (sizeof(T) == 2 && (reinterpret_cast<unsigned long long>(ptr) & 15ull) == 0) {
    const uint4 u = *reinterpret_cast<const uint4 *>(ptr);
    const T *h = reinterpret_cast<const T *>(&u);
#pragma unroll
    for (int c = 0; c < 8; ++c)
      x[c] = toFloat(h[c]);
  } else {
#pragma unroll
    for (int c = 0; c < 8; ++c)
      x[c] = toFloat(ptr[c]);
  }
}

__host__ __device__ constexpr int cmin(int a, int b) { return a < b ? a : b; }
__host__ __device__ constexpr int cmax(int a, int b) { return a > b ? a : b; }
__host__ __device__ constexpr int cdiv(int a, int b) { return (a + b - 1) / b; }
__host__ __device__ constexpr bool isPow2(int x) { return x > 0 && (x & (x - 1)) == 0; }
/// Largest power of two <= x (x >= 1).
__host__ __device__ constexpr int floorPow2(int x) { return x >= 2 ? 2 * floorPow2(x / 2) : 1; }

/// Query head bh = b*H + h and the kv head it reads (GQA: h / (H/Hkv)).
struct HeadIndex {
  int b, h, kh; // kh = b*Hkv + hk
  __device__ HeadIndex(const MuseParams &p, int bh) {
    b = bh / p.H;
    h = bh - b * p.H;
    int hk = h / (p.H / p.Hkv);
    kh = b * p.Hkv + hk;
  }
};

/// Row offset of batch entry vb (a virtual batch in a segment view) and row n
/// inside it: a segment view (p.seg_count > 0, causal far field) maps
/// vb = b*seg_count + a to batch b and row a*seg_stride + base + n, so every
/// stage written for one attention problem per head runs on all segments of a
/// level at once.
__device__ __forceinline__ long long viewRow(const MuseParams &p, int vb, long long n, long long sb,
                                             long long sn, long long base) {
  if (p.seg_count == 0)
    return vb * sb + n * sn;
  const int b = vb / p.seg_count, a = vb - b * p.seg_count;
  return b * sb + (a * p.seg_stride + base + n) * sn;
}

/// Element offset of query row n of head (b, h), key/value row m of kv head kh.
__device__ __forceinline__ long long qRow(const MuseParams &p, int b, int h, long long n) {
  return viewRow(p, b, n, p.q_sb, p.q_sn, p.seg_qbase) + h * p.q_sh;
}
__device__ __forceinline__ long long kRow(const MuseParams &p, int kh, long long m) {
  int b = kh / p.Hkv;
  return viewRow(p, b, m, p.k_sb, p.k_sm, 0) + (kh - b * p.Hkv) * p.k_sh;
}
__device__ __forceinline__ long long vRow(const MuseParams &p, int kh, long long m) {
  int b = kh / p.Hkv;
  return viewRow(p, b, m, p.v_sb, p.v_sm, 0) + (kh - b * p.Hkv) * p.v_sh;
}
__device__ __forceinline__ long long oRow(const MuseParams &p, int b, int h, long long n) {
  return viewRow(p, b, n, p.o_sb, p.o_sn, p.seg_qbase) + h * p.o_sh;
}
/// The same row of the caller's o in T (params.cuh out_o): written only by
/// launches that see the whole call (no segment view).
__device__ __forceinline__ long long outORow(const MuseParams &p, int b, int h, long long n) {
  return b * p.out_o_sb + h * p.out_o_sh + n * p.out_o_sn;
}

/// x = scale*q, rounded on its own (never fused into a later add), so that
/// every kernel forms bit-identical scaled queries and residuals.
__device__ __forceinline__ float scaled(const MuseParams &p, float q) { return __fmul_rn(q, p.scale); }

/// Asks for the 32-byte sector holding `at` in L2 (a hint: nothing waits).
__device__ __forceinline__ void prefetchL2(const void *at) { asm volatile("prefetch.global.L2 [%0];" ::"l"(at)); }

/// Brings `count` rows of `bytes` bytes each (row r starts at rowOf(r), a
/// float pointer) into L2, one prefetch per 32-byte sector, spread over
/// `threads` threads from `tid`: a later dependent load (staging after a
/// barrier, a read-modify-write in an epilogue) then waits for L2 instead of
/// DRAM.
template <class RowOf>
__device__ __forceinline__ void prefetchRowsL2(int count, int bytes, RowOf rowOf, int tid, int threads) {
  const int sectors = (bytes + 31) / 32 + 1; // + 1: rows need not start on a sector
  for (int e = tid; e < count * sectors; e += threads) {
    const int r = e / sectors, s = e - r * sectors;
    const char *row = reinterpret_cast<const char *>(rowOf(r));
    prefetchL2(s * 32 < bytes ? row + 32 * s : row + bytes - 1);
  }
}

/// Points of one k-means side: n, C, the clustered vector x_n (queries scaled)
/// and the side's workspace buffers.
template <class Cfg, Side S> struct SideView {
  static constexpr int C = S == Side::Query ? Cfg::CQ : Cfg::CK;
  static constexpr int D = Cfg::D;
  const MuseParams &p;
  __device__ explicit SideView(const MuseParams &params) : p(params) {}

  __device__ int count() const { return S == Side::Query ? p.N : p.M; }
  __device__ int heads() const { return S == Side::Query ? p.B * p.H : p.B * p.Hkv; }
  __device__ float *centroids() const { return S == Side::Query ? p.q_centroids : p.k_centroids; }
  __device__ float *sums() const { return S == Side::Query ? p.q_sums : p.k_sums; }
  __device__ int *counts() const { return S == Side::Query ? p.q_counts : p.k_counts; }
  __device__ int *assign() const { return S == Side::Query ? p.q_assign : p.k_assign; }
  __device__ int *offsets() const { return S == Side::Query ? p.q_offsets : p.k_offsets; }
  __device__ int *perm() const { return S == Side::Query ? p.q_perm : p.k_perm; }

  /// Element offset of point i of head `head` in q (Query) or k (Key).
  __device__ long long row(int head, long long i) const {
    if (S == Side::Query) {
      int b = head / p.H;
      return qRow(p, b, head - b * p.H, i);
    }
    return kRow(p, head, i);
  }
  /// Component d of point i (already at row offset `r`), as clustered.
  __device__ float at(long long r, int d) const {
    if (S == Side::Query)
      return scaled(p, loadf<typename Cfg::T>(p.q, r + d));
    return loadf<typename Cfg::T>(p.k, r + d);
  }
};

/// Which elements of a ROWS x COLS tile a thread owns, so that a warp's
/// threads hold consecutive columns (conflict-free shared reads along a row)
/// and every thread keeps the same columns for its whole life.
/// COLS and THREADS are powers of two.
template <int ROWS, int COLS, int THREADS> struct Owner {
  static_assert(isPow2(COLS) && isPow2(THREADS), "tile columns and threads must be powers of two");
  static constexpr bool kWide = THREADS >= COLS;
  static constexpr int NC = kWide ? 1 : COLS / THREADS;      // columns per thread
  static constexpr int RSTEP = kWide ? THREADS / COLS : 1;    // row stride
  static constexpr int NR = cdiv(ROWS, RSTEP);                // rows per thread
  int col0, row0;
  __device__ explicit Owner(int tid) {
    col0 = kWide ? tid % COLS : tid;
    row0 = kWide ? tid / COLS : 0;
  }
  __device__ int col(int a) const { return col0 + a * THREADS; }
  __device__ int row(int r) const { return row0 + r * RSTEP; }
  /// False only for the padding rows of the last step when RSTEP does not divide ROWS.
  __device__ bool valid(int r) const { return ROWS % RSTEP == 0 || row(r) < ROWS; }
};

/// Running (max, sum) of an online log-sum-exp; exp of -inf terms is 0 and an
/// all -inf history never produces NaN.
__device__ __forceinline__ float safeMax(float m) { return m == -kInf() ? 0.f : m; }

/// The first key of the exact causal window of query t (ALGORITHM.md section
/// 4): block t/S and the w - 1 blocks before it, so query t sees [begin, t].
template <int S, int W> __device__ __forceinline__ int windowBegin(int t) {
  const int b = t / S - W + 1;
  return b > 0 ? b * S : 0;
}

} // namespace muse

#endif // MUSE_TEMPLATES_COMMON_CUH
