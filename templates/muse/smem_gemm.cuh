//===- smem_gemm.cuh - Register-tiled products of shared-memory tiles -----===//
//
// fp32 path: acc[TM][TN] += A(M x K) * B(K x N) with A and B in shared memory at any
// strides; each thread owns a TM x TN micro-tile (rows ty + TY*i, columns
// tx + TX*j) so that every shared load feeds several FMAs. The k loop runs in
// ascending order with one fmaf per term, so a single element equals
// dot<K>() of its row and column bit for bit.
// 16-bit path: mma.sync m16n8k16 (bf16/f16 in, fp32 accumulators) with
// fragments from shared memory by 32-bit loads or ldmatrix.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_SMEM_GEMM_CUH
#define MUSE_TEMPLATES_SMEM_GEMM_CUH

#include "muse/common.cuh"

namespace muse {

template <int M, int N, int THREADS> struct MicroTile {
  static_assert(isPow2(M) && isPow2(N) && isPow2(THREADS), "micro-tiled products need powers of two");
  // About four columns per thread; wider when there are too few rows to go round.
  static constexpr int TX0 = cmin(cmin(cmax(1, N / 4), THREADS), N);
  static constexpr int TX = THREADS / TX0 > M ? cmin(N, THREADS / M) : TX0;
  static constexpr int TY = THREADS / TX;
  static constexpr int TM = cdiv(M, TY), TN = cdiv(N, TX);
  int tx, ty;
  __device__ explicit MicroTile(int tid) : tx(tid % TX), ty(tid / TX) {}
  __device__ int row(int i) const { return ty + TY * i; }
  __device__ int col(int j) const { return tx + TX * j; }
  __device__ bool valid(int i, int j) const {
    return (M % TY == 0 || row(i) < M) && (N % TX == 0 || col(j) < N);
  }
};

/// acc(i, j) += sum_{k < kEnd} a[row(i)*AR + k*AK] * b[k*BK + col(j)*BC]
/// (rows and columns past the tile are clamped to row/column 0 and must be ignored).
template <int AR, int AK, int BK, int BC, class Mt, int TM, int TN>
__device__ __forceinline__ void gemmAccumulate(const Mt &mt, float (&acc)[TM][TN], const float *a,
                                               const float *b, int kEnd) {
  int ar[TM], bc[TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
    ar[i] = (mt.valid(i, 0) ? mt.row(i) : 0) * AR;
#pragma unroll
  for (int j = 0; j < TN; ++j)
    bc[j] = (mt.valid(0, j) ? mt.col(j) : 0) * BC;
#pragma unroll 4
  for (int k = 0; k < kEnd; ++k) {
    float av[TM], bv[TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
      av[i] = a[ar[i] + k * AK];
#pragma unroll
    for (int j = 0; j < TN; ++j)
      bv[j] = b[k * BK + bc[j]];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j)
        acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

/// True for the 16-bit input types whose tiles go through the tensor cores
/// (bf16, f16); f32 inputs keep the exact fp32 paths above.
template <class T> struct TensorCoreType { static constexpr bool value = true; };
template <> struct TensorCoreType<float> { static constexpr bool value = false; };

/// Two floats rounded into one 32-bit register of T pairs (low half = first).
template <class T> __device__ __forceinline__ unsigned pack2(float lo, float hi);
template <> __device__ __forceinline__ unsigned pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<unsigned *>(&v);
}
template <> __device__ __forceinline__ unsigned pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<unsigned *>(&v);
}
template <class T> __device__ __forceinline__ float2 unpack2(unsigned u);
template <> __device__ __forceinline__ float2 unpack2<__nv_bfloat16>(unsigned u) {
  return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&u));
}
template <> __device__ __forceinline__ float2 unpack2<__half>(unsigned u) {
  return __half22float2(*reinterpret_cast<__half2 *>(&u));
}

/// One float rounded to T.
template <class T> __device__ __forceinline__ T fromFloat(float x);
template <> __device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half fromFloat<__half>(float x) { return __float2half_rn(x); }

/// Two floats rounded to T at element `at` of `out`: one 4-byte store when
/// the pair is aligned, two element stores otherwise (any strides stay legal).
template <class T> __device__ __forceinline__ void storeOutPair(void *out, long long at, float x, float y) {
  T *ptr = static_cast<T *>(out) + at;
  if ((reinterpret_cast<unsigned long long>(ptr) & 3ull) == 0) {
    *reinterpret_cast<unsigned *>(ptr) = pack2<T>(x, y);
  } else {
    ptr[0] = fromFloat<T>(x);
    ptr[1] = fromFloat<T>(y);
  }
}

/// Elementwise product of two registers of T pairs, rounded to T.
template <class T> __device__ __forceinline__ unsigned mul2(unsigned a, unsigned b);
template <> __device__ __forceinline__ unsigned mul2<__nv_bfloat16>(unsigned a, unsigned b) {
  __nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162 *>(&a), *reinterpret_cast<__nv_bfloat162 *>(&b));
  return *reinterpret_cast<unsigned *>(&r);
}
template <> __device__ __forceinline__ unsigned mul2<__half>(unsigned a, unsigned b) {
  __half2 r = __hmul2(*reinterpret_cast<__half2 *>(&a), *reinterpret_cast<__half2 *>(&b));
  return *reinterpret_cast<unsigned *>(&r);
}

/// A pair of consecutive 16-bit elements as one 32-bit register.
template <class T> __device__ __forceinline__ unsigned ldPair(const T *ptr) {
  if ((reinterpret_cast<unsigned long long>(ptr) & 3ull) == 0)
    return *reinterpret_cast<const unsigned *>(ptr);
  return pack2<T>(toFloat(ptr[0]), toFloat(ptr[1]));
}

/// (a, b) split into a rounded T pair hi and the T pair lo of what rounding
/// lost: hi + lo carries about 16 significant bits, so products of split
/// operands (hi*hi + hi*lo + lo*hi) come close to fp32 on the tensor cores.
template <class T> __device__ __forceinline__ void split2(float a, float b, unsigned &hi, unsigned &lo) {
  hi = pack2<T>(a, b);
  const float2 h = unpack2<T>(hi);
  lo = pack2<T>(a - h.x, b - h.y);
}

/// c += a * b for one m16n8k16 tile (a row-major 16x16, b 16x8), fp32 accumulators.
/// Fragment ownership (g = lane / 4, t = lane % 4): a0 (g, 2t..2t+1), a1 (g+8, 2t..),
/// a2 (g, 2t+8..), a3 (g+8, 2t+8..); b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g);
/// c0 c1 (g, 2t..2t+1), c2 c3 (g+8, 2t..2t+1).
/// Zeroes N mma.sync accumulator fragments (a warp's 16 x 8N fp32 tile).
template <int N> __device__ __forceinline__ void zeroFragments(float (&acc)[N][4]) {
#pragma unroll
  for (int n = 0; n < N; ++n)
    acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
}

template <class T>
__device__ __forceinline__ void mma16816(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                                        unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
               "{%8,%9}, {%0,%1,%2,%3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                                 unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
               "{%8,%9}, {%0,%1,%2,%3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// acc[0] += A·B0, acc[1] += A·B1 for the two 8-column n-tiles of an x4 B
/// fragment (loadBTrans / ldmatrix: b[0], b[1] the first, b[2], b[3] the second).
template <class T>
__device__ __forceinline__ void mmaTwoTiles(float (&acc)[2][4], const unsigned (&a)[4], const unsigned (&b)[4]) {
  mma16816<T>(acc[0], a, b[0], b[1]);
  mma16816<T>(acc[1], a, b[2], b[3]);
}

/// A 32-bit pair of 16-bit elements from shared memory.
__device__ __forceinline__ unsigned lds32(const void *p) { return *static_cast<const unsigned *>(p); }

/// ldmatrix .x4 .trans: lane L passes the row address of matrix L / 8 and
/// receives, per matrix, the pair (rows 2t, 2t+1; column g) of the stored 8x8.
__device__ __forceinline__ void ldsmX4Trans(unsigned (&r)[4], const void *row) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

/// B fragments (b0, b1) of two adjacent n8 tiles (columns c0..c0+15) of a
/// k16 x n16 block stored row-major (k rows of LD elements, n contiguous):
/// r[0], r[1] for columns c0..c0+7, r[2], r[3] for c0+8..c0+15.
template <int LD, class T>
__device__ __forceinline__ void loadBTrans(unsigned (&r)[4], const T *base, int k0, int c0, int lane) {
  const int row = k0 + (lane & 7) + ((lane >> 3) & 1) * 8;
  const int col = c0 + (lane >> 4) * 8;
  ldsmX4Trans(r, base + row * LD + col);
}

/// A fragment of a 16x16 block A(m, k) = S(k, m) where S is stored row-major
/// (k rows of LD elements, m contiguous): A's rows m0..m0+15, columns k0..k0+15.
template <int LD, class T>
__device__ __forceinline__ void loadATrans(unsigned (&r)[4], const T *base, int m0, int k0, int lane) {
  const int row = k0 + (lane & 7) + (lane >> 4) * 8;
  const int col = m0 + ((lane >> 3) & 1) * 8;
  ldsmX4Trans(r, base + row * LD + col);
}

/// ldmatrix .x4 (no transpose): lane L passes the row address of matrix L / 8
/// and receives, per matrix, the pair (row g; columns 2t, 2t+1) of the stored 8x8.
__device__ __forceinline__ void ldsmX4(unsigned (&r)[4], const void *row) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

/// A fragment of the 16x16 block (rows m0.., columns k0..) of a row-major
/// tile (rows of LD elements, 16-byte aligned): a0..a3 as mma16816 takes them.
template <int LD, class T>
__device__ __forceinline__ void loadA(unsigned (&r)[4], const T *base, int m0, int k0, int lane) {
  const int row = m0 + (lane & 7) + ((lane >> 3) & 1) * 8;
  const int col = k0 + (lane >> 4) * 8;
  ldsmX4(r, base + row * LD + col);
}

/// B fragments (b0, b1) of two adjacent n8 tiles (columns n0..n0+15) of a
/// k16 x n16 block B(k, n) = S(n, k) where S is stored row-major (n rows of LD
/// elements, k contiguous): r[0], r[1] for n0..n0+7, r[2], r[3] for n0+8...
template <int LD, class T>
__device__ __forceinline__ void loadBRows(unsigned (&r)[4], const T *base, int k0, int n0, int lane) {
  ldsmX4(r, base + (n0 + (lane & 7) + ((lane >> 4) & 1) * 8) * LD + k0 + ((lane >> 3) & 1) * 8);
}

/// Eight floats rounded to T and stored as one 16-byte row segment (dst
/// 16-byte aligned).
template <class T> __device__ __forceinline__ void store8(T *dst, const float (&x)[8]) {
  uint4 u;
  u.x = pack2<T>(x[0], x[1]);
  u.y = pack2<T>(x[2], x[3]);
  u.z = pack2<T>(x[4], x[5]);
  u.w = pack2<T>(x[6], x[7]);
  *reinterpret_cast<uint4 *>(dst) = u;
}

/// Block-shared products on the tensor cores: C (M x N) is cut into 16 x 16
/// blocks, block b belonging to warp b % W; a warp's nb-th block is
/// acc[nb][h] (h: the n8 half) in mma16816's accumulator layout.
template <int M, int N, int W> struct MmaBlocks {
  static_assert(M % 16 == 0 && N % 16 == 0, "16 x 16 blocks");
  static constexpr int BN = N / 16, BLOCKS = (M / 16) * BN, NB = cdiv(BLOCKS, W);
  __device__ static bool live(int nb, int warp) { return warp + W * nb < BLOCKS; }
  __device__ static int m0(int nb, int warp) { return (warp + W * nb) / BN * 16; }
  __device__ static int n0(int nb, int warp) { return (warp + W * nb) % BN * 16; }
};

/// acc += A B over k < kEnd (a multiple of 16) for the calling warp's blocks:
/// aLoad(af, m0, k0) fills an A fragment (rows m0.., columns k0..), bLoad(bb,
/// k0, n0) the B fragments of columns n0..n0+15 (loadBTrans, loadBRows).
template <class Mb, class T, class AL, class BL>
__device__ __forceinline__ void mmaAccumulate(float (&acc)[Mb::NB][2][4], int kEnd, AL aLoad, BL bLoad) {
  const int warp = threadIdx.x / 32;
  for (int k0 = 0; k0 < kEnd; k0 += 16) {
#pragma unroll
    for (int nb = 0; nb < Mb::NB; ++nb) {
      if (!Mb::live(nb, warp))
        continue;
      unsigned af[4], bb[4];
      aLoad(af, Mb::m0(nb, warp), k0);
      bLoad(bb, k0, Mb::n0(nb, warp));
      mma16816<T>(acc[nb][0], af, bb[0], bb[1]);
      mma16816<T>(acc[nb][1], af, bb[2], bb[3]);
    }
  }
}

/// f(row, col, v0, v1) for the pairs (row, col), (row, col + 1) of the
/// calling lane's share of acc.
template <class Mb, class F> __device__ __forceinline__ void mmaForEach(const float (&acc)[Mb::NB][2][4], F f) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
#pragma unroll
  for (int nb = 0; nb < Mb::NB; ++nb) {
    if (!Mb::live(nb, warp))
      continue;
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr)
        f(Mb::m0(nb, warp) + g + 8 * rr, Mb::n0(nb, warp) + 8 * h + 2 * t4, acc[nb][h][2 * rr],
          acc[nb][h][2 * rr + 1]);
  }
}

/// 16 bytes global -> shared without a register round trip (sm_80+), both
/// addresses 16-byte aligned; visible to the copying thread after
/// cpAsyncWaitAll, to the block after a barrier that follows it.
__device__ __forceinline__ void cpAsync16(void *smem, const void *gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void cpAsyncWaitAll() { asm volatile("cp.async.wait_all;" ::: "memory"); }

/// 4 bytes global -> shared without a register round trip, for rows whose
/// 16-byte alignment differs between source and destination (both addresses
/// 4-byte aligned); visible as after cpAsync16.
__device__ __forceinline__ void cpAsync4(void *smem, const void *gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(s), "l"(gmem) : "memory");
}

} // namespace muse

#endif // MUSE_TEMPLATES_SMEM_GEMM_CUH
