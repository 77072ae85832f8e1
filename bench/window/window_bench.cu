// The causal window's kernels alone (causal_window_mma, backward_window_dq_mma,
// backward_window_dkdv_mma; S 2048, w 1, D 64, bf16), outside the runtime, to
// choose their tiles: first a check against a naive fp32 GPU reference on an
// awkward shape (B 1, H 3, N 5000), then the median of 20 timed launches of
// each at B 16, H 8, N 16384 with the FLOP rate of the window's products.
// Built by bench/window/run.sh with nvcc, once with the templates' own tiles
// and once per line of variants.sh; "once" as the argument launches each
// kernel once at the timing shape (for ncu).
#include "muse/backward_window_mma.cuh"
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include <cmath>
#include <string>

struct Cfg {
  using T = __nv_bfloat16;
  static constexpr int D = 64, DV = 64, CQ = 64, CK = 64, ITERS = 3, ORDER = 0, NEAR = 0, THREADS = 128,
                       BLOCK_Q = 64, BLOCK_K = 64, BLOCK_SIZE = 2048, WINDOW_BLOCKS = 1;
};
using T = Cfg::T;
#ifdef FBQ // a tile variant of bench/window/variants.sh
struct FwdT : muse::WindowMmaTiles<Cfg> {
  static constexpr int BQ = FBQ, MT = FMT, WARPS = BQ / (16 * MT), THREADS = 32 * WARPS, BK = FBK;
};
struct BwdT : muse::BwdWindowMmaTiles<Cfg> {
  static constexpr int DQ_ROWS = QROWS, DKDV_ROWS = KROWS, DQ_THREADS = 2 * QROWS, DKDV_THREADS = 2 * KROWS,
                       KT = QKT, QT = KQT;
  static constexpr bool KV_REGS = KREGS;
};
#else // the templates' own tiles and the register caps of Schedule.cpp
#define FMINB 2
#define QMINB 2
#define KMINB 4
using FwdT = muse::WindowMmaTiles<Cfg>;
using BwdT = muse::BwdWindowMmaTiles<Cfg>;
#endif
__global__ void __launch_bounds__(FwdT::THREADS, FMINB) kfwd(MuseParams p) { muse::causal_window_mma<Cfg, FwdT>(p); }
__global__ void __launch_bounds__(BwdT::DQ_THREADS, QMINB) kdq(MuseParams p) { muse::backward_window_dq_mma<Cfg, BwdT>(p); }
__global__ void __launch_bounds__(BwdT::DKDV_THREADS, KMINB) kdkdv(MuseParams p) {
  muse::backward_window_dkdv_mma<Cfg, BwdT>(p);
}

#define CK_(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); exit(1); } } while (0)

__global__ void fillRand(T *x, long long n, unsigned seed, float amp) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)(i * 2654435761ull) ^ seed;
    h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
    x[i] = __float2bfloat16(amp * ((h & 0xffffff) / 16777216.f * 2.f - 1.f));
  }
}
__global__ void toT(const float *x, T *y, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    y[i] = __float2bfloat16(x[i]);
}
// Naive reference, one thread per query row / key row, fp32, contiguous [BH, N, 64].
__global__ void refFwd(const T *q, const T *k, const T *v, float *o, float *lse, int BH, int N, int S, float scale) {
  long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (r >= (long long)BH * N) return;
  int bh = r / N, t = r % N; int lo = (t / S) * S;
  const T *qr = q + r * 64; float m = -1e30f, l = 0; float acc[64] = {0};
  for (int u = lo; u <= t; ++u) {
    const T *kr = k + ((long long)bh * N + u) * 64; float s = 0;
    for (int d = 0; d < 64; ++d) s += __bfloat162float(qr[d]) * __bfloat162float(kr[d]);
    s *= scale; float mn = fmaxf(m, s); float a = expf(m - mn), pp = expf(s - mn);
    l = l * a + pp; const T *vr = v + ((long long)bh * N + u) * 64;
    for (int d = 0; d < 64; ++d) acc[d] = acc[d] * a + pp * __bfloat162float(vr[d]);
    m = mn;
  }
  for (int d = 0; d < 64; ++d) o[r * 64 + d] = acc[d] / l;
  lse[r] = m + logf(l);
}
__global__ void refDq(const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta,
                      float *dq, int BH, int N, int S, float scale) {
  long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (r >= (long long)BH * N) return;
  int bh = r / N, t = r % N; int lo = (t / S) * S; float acc[64] = {0};
  for (int u = lo; u <= t; ++u) {
    long long kr = ((long long)bh * N + u) * 64; float s = 0, dp = 0;
    for (int d = 0; d < 64; ++d) s += __bfloat162float(q[r * 64 + d]) * __bfloat162float(k[kr + d]);
    for (int d = 0; d < 64; ++d) dp += __bfloat162float(dout[r * 64 + d]) * __bfloat162float(v[kr + d]);
    float pp = expf(s * scale - lse[r]); float g = pp * (dp - delta[r]);
    for (int d = 0; d < 64; ++d) acc[d] += g * __bfloat162float(k[kr + d]);
  }
  for (int d = 0; d < 64; ++d) dq[r * 64 + d] = scale * acc[d];
}
__global__ void refDkdv(const T *q, const T *k, const T *v, const T *dout, const float *lse, const float *delta,
                        float *dk, float *dv, int BH, int N, int S, float scale) {
  long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (r >= (long long)BH * N) return;
  int bh = r / N, l = r % N; int hi = min(N, (l / S + 1) * S); float ak[64] = {0}, av[64] = {0};
  for (int t = l; t < hi; ++t) {
    long long qr = ((long long)bh * N + t) * 64; float s = 0, dp = 0;
    for (int d = 0; d < 64; ++d) s += __bfloat162float(q[qr + d]) * __bfloat162float(k[r * 64 + d]);
    for (int d = 0; d < 64; ++d) dp += __bfloat162float(dout[qr + d]) * __bfloat162float(v[r * 64 + d]);
    int rt = bh * N + t; float pp = expf(s * scale - lse[rt]); float g = pp * (dp - delta[rt]);
    for (int d = 0; d < 64; ++d) { ak[d] += g * __bfloat162float(q[qr + d]); av[d] += pp * __bfloat162float(dout[qr + d]); }
  }
  for (int d = 0; d < 64; ++d) { dk[r * 64 + d] = scale * ak[d]; dv[r * 64 + d] = av[d]; }
}

struct Bufs {
  T *q, *k, *v, *dout, *oin; float *o, *lse, *dq, *dk, *dv, *delta;
};
static MuseParams params(const Bufs &b, int B, int H, int N) {
  MuseParams p{};
  p.q = b.q; p.k = b.k; p.v = b.v; p.o = b.o; p.lse = nullptr; p.run_lse = b.lse;
  long long sn = 64, sh = (long long)N * 64, sb = H * sh;
  p.q_sb = p.k_sb = p.v_sb = p.o_sb = p.do_sb = p.dq_sb = p.dk_sb = p.dv_sb = sb;
  p.q_sh = p.k_sh = p.v_sh = p.o_sh = p.do_sh = p.dq_sh = p.dk_sh = p.dv_sh = sh;
  p.q_sn = p.k_sm = p.v_sm = p.o_sn = p.do_sn = p.dq_sn = p.dk_sm = p.dv_sm = sn;
  p.B = B; p.H = H; p.Hkv = H; p.N = N; p.M = N; p.scale = 0.125f; p.seq_len = N; p.batch = B;
  p.o_in = b.oin; p.dout = b.dout; p.dq = b.dq; p.dk = b.dk; p.dv = b.dv; p.bwd_delta = b.delta;
  return p;
}
static Bufs alloc(int BH, int N) {
  Bufs b; long long n = (long long)BH * N * 64;
  CK_(cudaMalloc(&b.q, n * 2)); CK_(cudaMalloc(&b.k, n * 2)); CK_(cudaMalloc(&b.v, n * 2));
  CK_(cudaMalloc(&b.dout, n * 2)); CK_(cudaMalloc(&b.oin, n * 2));
  CK_(cudaMalloc(&b.o, n * 4)); CK_(cudaMalloc(&b.dq, n * 4)); CK_(cudaMalloc(&b.dk, n * 4)); CK_(cudaMalloc(&b.dv, n * 4));
  CK_(cudaMalloc(&b.lse, (long long)BH * N * 4)); CK_(cudaMalloc(&b.delta, (long long)BH * N * 4));
  fillRand<<<1024, 256>>>(b.q, n, 1u, 2.f); fillRand<<<1024, 256>>>(b.k, n, 2u, 2.f);
  fillRand<<<1024, 256>>>(b.v, n, 3u, 1.f); fillRand<<<1024, 256>>>(b.dout, n, 4u, 1.f);
  return b;
}
using Fwd = FwdT;
using Bwd = BwdT;
static void launchFwd(const MuseParams &p) {
  kfwd<<<dim3((p.N + Fwd::BQ - 1) / Fwd::BQ, p.B * p.H), Fwd::THREADS>>>(p);
}
static void launchDq(const MuseParams &p) {
  kdq<<<dim3((p.N + Bwd::DQ_ROWS - 1) / Bwd::DQ_ROWS, p.B * p.H), Bwd::DQ_THREADS>>>(p);
}
static void launchDkdv(const MuseParams &p) {
  kdkdv<<<dim3((p.M + Bwd::DKDV_ROWS - 1) / Bwd::DKDV_ROWS, p.B * p.Hkv), Bwd::DKDV_THREADS>>>(p);
}
static double relErr(const float *a, const float *b, long long n) {
  std::vector<float> x(n), y(n);
  cudaMemcpy(x.data(), a, n * 4, cudaMemcpyDeviceToHost); cudaMemcpy(y.data(), b, n * 4, cudaMemcpyDeviceToHost);
  double num = 0, den = 0; for (long long i = 0; i < n; ++i) { double d = x[i] - y[i]; num += d * d; den += (double)y[i] * y[i]; if (!std::isfinite(x[i])) return 1e30; }
  return std::sqrt(num / den);
}
template <class F> static float timeIt(F f, int reps) {
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  for (int i = 0; i < 3; ++i) f();
  std::vector<float> ts;
  for (int i = 0; i < reps; ++i) { cudaEventRecord(a); f(); cudaEventRecord(b); cudaEventSynchronize(b); float ms; cudaEventElapsedTime(&ms, a, b); ts.push_back(ms); }
  std::sort(ts.begin(), ts.end()); return ts[ts.size() / 2];
}
int main(int argc, char **argv) {
  const bool once = argc > 1 && std::string(argv[1]) == "once";
  if (!once) { // correctness on an awkward shape
    const int B = 1, H = 3, N = 5000, BH = B * H; const long long n = (long long)BH * N * 64;
    Bufs b = alloc(BH, N), r = alloc(BH, N);
    cudaMemcpy(r.q, b.q, n * 2, cudaMemcpyDeviceToDevice); cudaMemcpy(r.k, b.k, n * 2, cudaMemcpyDeviceToDevice);
    cudaMemcpy(r.v, b.v, n * 2, cudaMemcpyDeviceToDevice); cudaMemcpy(r.dout, b.dout, n * 2, cudaMemcpyDeviceToDevice);
    MuseParams p = params(b, B, H, N);
    refFwd<<<(BH * N + 127) / 128, 128>>>(r.q, r.k, r.v, r.o, r.lse, BH, N, 2048, 0.125f);
    launchFwd(p); CK_(cudaGetLastError()); CK_(cudaDeviceSynchronize());
    printf("check fwd o rel %.3e lse rel %.3e\n", relErr(b.o, r.o, n), relErr(b.lse, r.lse, BH * N));
    // backward on the reference forward's o and lse
    toT<<<1024, 256>>>(r.o, b.oin, n); cudaMemcpy(b.lse, r.lse, BH * N * 4, cudaMemcpyDeviceToDevice);
    launchDq(p); CK_(cudaGetLastError()); launchDkdv(p); CK_(cudaGetLastError()); CK_(cudaDeviceSynchronize());
    refDq<<<(BH * N + 127) / 128, 128>>>(r.q, r.k, r.v, r.dout, r.lse, b.delta, r.dq, BH, N, 2048, 0.125f);
    refDkdv<<<(BH * N + 127) / 128, 128>>>(r.q, r.k, r.v, r.dout, r.lse, b.delta, r.dk, r.dv, BH, N, 2048, 0.125f);
    CK_(cudaDeviceSynchronize());
    printf("check dq rel %.3e dk rel %.3e dv rel %.3e\n", relErr(b.dq, r.dq, n), relErr(b.dk, r.dk, n), relErr(b.dv, r.dv, n));
  }
  const int B = 16, H = 8, N = 16384, BH = B * H;
  Bufs b = alloc(BH, N); MuseParams p = params(b, B, H, N);
  launchFwd(p); CK_(cudaDeviceSynchronize());
  toT<<<4096, 256>>>(b.o, b.oin, (long long)BH * N * 64);
  launchDq(p); launchDkdv(p); CK_(cudaDeviceSynchronize());
  if (once) return 0;
  const double fl = 4.0 * 64 * (2048 + 1) / 2.0 * (double)N * BH; // forward FLOPs of the window
  float tf = timeIt([&] { launchFwd(p); }, 20), tq = timeIt([&] { launchDq(p); }, 20), tk = timeIt([&] { launchDkdv(p); }, 20);
  CK_(cudaGetLastError());
  printf("16k S2048 B16 H8: fwd %.3f ms (%.0f TF/s)  dq %.3f ms (%.0f, 3 products)  dkdv %.3f ms (%.0f, 4 products)  bwd %.3f ms\n",
         tf, fl / tf / 1e9, tq, 1.5 * fl / tq / 1e9, tk, 2 * fl / tk / 1e9, tq + tk);
  return 0;
}
