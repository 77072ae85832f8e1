//===- smem_gemm.cuh - Register-tiled products of shared-memory tiles -----===//
//
// acc[TM][TN] += A(M x K) * B(K x N) with A and B in shared memory at any
// strides; each thread owns a TM x TN micro-tile (rows ty + TY*i, columns
// tx + TX*j) so that every shared load feeds several FMAs. The k loop runs in
// ascending order with one fmaf per term, so a single element equals
// dot<K>() of its row and column bit for bit.
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

} // namespace muse

#endif // MUSE_TEMPLATES_SMEM_GEMM_CUH
