//===- online_softmax.cuh - Row-wise online softmax over column tiles -----===//
//
// Stage 1 (rows = query centroids, columns = a cluster's keys) and stage 2
// (rows = queries, columns = key-cluster summaries or near keys) both fold
// tiles of logits into a running max m, sum l and weighted row accumulators:
//   m' = max(m, max_t s_t),  a = e^{m - m'},  p_t = e^{s_t - m'},
//   l' = a l + sum_t p_t,    acc' = a acc + sum_t p_t val_t.
// -inf logits (padding, empty or masked columns) contribute exactly 0 and an
// all -inf history keeps m = -inf without producing NaN.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_ONLINE_SOFTMAX_CUH
#define MUSE_TEMPLATES_ONLINE_SOFTMAX_CUH

#include "muse/common.cuh"

namespace muse {

/// Turns the logits s[ROWS][COLS] (stride LD, written and synchronised by the
/// caller) into weights p in place and updates m, l and the rescale factor
/// alpha of every row. Ends synchronised: s, alpha and l may be read.
template <int ROWS, int COLS, int LD, int THREADS>
__device__ __forceinline__ void softmaxStep(float *s, float *m, float *l, float *alpha) {
  const int tid = threadIdx.x;
  for (int r = tid; r < ROWS; r += THREADS) {
    float mx = m[r];
    for (int t = 0; t < COLS; ++t)
      mx = fmaxf(mx, s[r * LD + t]);
    alpha[r] = mx == -kInf() ? 1.f : expf(m[r] - mx);
    m[r] = mx;
  }
  __syncthreads();
  for (int e = tid; e < ROWS * COLS; e += THREADS) {
    const int r = e / COLS, t = e - r * COLS;
    s[r * LD + t] = expf(s[r * LD + t] - safeMax(m[r]));
  }
  __syncthreads();
  for (int r = tid; r < ROWS; r += THREADS) {
    float sum = 0.f;
    for (int t = 0; t < COLS; ++t)
      sum += s[r * LD + t];
    l[r] = fmaf(l[r], alpha[r], sum);
  }
}

/// acc(r, c) = alpha[r] acc(r, c) + sum_t p[r][t] val[t][c] over the elements
/// `own` gives this thread (acc[NR][NC] in registers).
template <class Own, int COLS, int PLD, int VLD, int NR, int NC>
__device__ __forceinline__ void rescaleAccumulate(const Own &own, float (&acc)[NR][NC],
                                                  const float *p, const float *val,
                                                  const float *alpha) {
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    if (!own.valid(r))
      continue;
    const float a = alpha[own.row(r)];
#pragma unroll
    for (int c = 0; c < NC; ++c)
      acc[r][c] *= a;
  }
  for (int t = 0; t < COLS; ++t) {
    float v[NC];
#pragma unroll
    for (int c = 0; c < NC; ++c)
      v[c] = val[t * VLD + own.col(c)];
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      if (!own.valid(r))
        continue;
      const float w = p[own.row(r) * PLD + t];
#pragma unroll
      for (int c = 0; c < NC; ++c)
        acc[r][c] = fmaf(w, v[c], acc[r][c]);
    }
  }
}

/// Sequential dot products shared by the kernels that must agree bit for bit
/// (far_field and dipole both evaluate s_nj = lnmass + r_n . kbar).
template <int D> __device__ __forceinline__ float dot(const float *a, const float *b) {
  float s = 0.f;
#pragma unroll 16
  for (int d = 0; d < D; ++d)
    s = fmaf(a[d], b[d], s);
  return s;
}
/// (x - c) . k with the residual formed per component, as r_n = x_n - qbar_i.
template <int D>
__device__ __forceinline__ float residualDot(const float *x, const float *c, const float *k) {
  float s = 0.f;
#pragma unroll 16
  for (int d = 0; d < D; ++d)
    s = fmaf(x[d] - c[d], k[d], s);
  return s;
}

} // namespace muse

#endif // MUSE_TEMPLATES_ONLINE_SOFTMAX_CUH
