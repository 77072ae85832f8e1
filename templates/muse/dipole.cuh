//===- dipole.cuh - Order-1 correction: the value-key covariance ----------===//
//
// Block (i, bh), after far_field. For every far key cluster j of query
// cluster i (non-empty, not near), with w_il / Z_ij = e^{qbar_i . k_l - lnmass_ij}:
//   Sigma_ij = sum_{l in j} (w_il / Z_ij) (v_l - vbar_ij)(k_l - kbar_ij)^T   (Dv x D)
//   o_n     += e^{s_nj - lse_n} Sigma_ij r_n            for every query n of i
// with s_nj = lnmass_ij + r_n . kbar_ij evaluated exactly as far_field does
// and lse_n from row_lse. Sigma_ij lives only in registers while it is formed
// and in shared memory while it is applied, DVT value rows at a time; every
// o_n is updated by one thread, once per value-row tile (no atomics).
// 16-bit inputs take the tensor-core path (dipoleMma below): the same sums
// with bf16/f16 operands and fp32 accumulation.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_DIPOLE_CUH
#define MUSE_TEMPLATES_DIPOLE_CUH

#include "muse/common.cuh"
#include "muse/online_softmax.cuh"
#include "muse/smem_gemm.cuh"

namespace muse {

template <class Cfg> struct DipoleTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV, THREADS = Cfg::THREADS;
  static constexpr int E1 = Cfg::NEAR > 0 ? Cfg::NEAR : 1;
  // Value rows of Sigma per pass: at most 32 registers of Sigma per thread.
  static constexpr int DVT = cmin(DV, floorPow2(cmax(1, 32 * THREADS / D)));
  __host__ __device__ static constexpr int bytes(int bq, int bk) {
    return 4 * (bq * (D + 1) + 2 * D + DVT + bk * (D + 1) + bk * DVT + DVT * (D + 1) + 3 * bq +
                2 * bk + E1) +
           Cfg::CK;
  }
  // Queries per tile: at most 32 accumulator registers per thread.
  static constexpr int BQ0 = cmin(floorPow2(cmax(1, Cfg::BLOCK_Q)), cmax(1, 32 * THREADS / DVT));
  static constexpr int BK = 16; // keys per tile: Sigma formation is register-bound, not load-bound
  __host__ __device__ static constexpr int fitBQ(int bq) { return bq > 1 && bytes(bq, BK) > kSharedBudget ? fitBQ(bq / 2) : bq; }
  static constexpr int BQ = fitBQ(BQ0);
  static_assert(bytes(BQ, BK) <= kSharedBudget, "dipole tiles exceed 48 KB of shared memory");
};

/// fp32 path: Grid (CQ, B*H), block THREADS.
template <class Cfg> __device__ void dipoleExact(const MuseParams &p) {
  using Tl = DipoleTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, THREADS = Cfg::THREADS;
  constexpr int E = Cfg::NEAR, BQ = Tl::BQ, BK = Tl::BK, DVT = Tl::DVT, F = 1 + D + DV;
  using T = typename Cfg::T;
  using MtS = MicroTile<DVT, D, THREADS>; // Sigma (value row a, key column d)
  using MtO = MicroTile<BQ, DVT, THREADS>; // output (query, value row)
  static_assert(DV % DVT == 0, "value-row tile must divide the value dim");
  // Threads per key for the weights: a warp-aligned power of two.
  constexpr int kGroup = cmin(32, cmax(1, THREADS / BK));
  static_assert(THREADS % kGroup == 0 && (BK * kGroup) % 32 == 0, "weight groups must fill whole warps");

  __shared__ float rs[BQ][D + 1]; // residuals r_n
  __shared__ float cen[D];
  __shared__ float kbar[D];
  __shared__ float vbar[DVT];
  __shared__ float ks[BK][D + 1]; // k_l, then k_l - kbar
  __shared__ float vs[BK][DVT];   // v_l, then (w_l / Z)(v_l - vbar)
  __shared__ float sig[DVT][D + 1];
  __shared__ float prob[BQ], lse[BQ];
  __shared__ int qidx[BQ];
  __shared__ float wk[BK];
  __shared__ unsigned char isNear[CK];

  const int tid = threadIdx.x;
  const int i = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
  if (qcount == 0)
    return;
  const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
  const float *sum_i = p.summaries + ((long long)bh * CQ + i) * CK * F;
  const int *koff = p.k_offsets + (long long)hi.kh * (CK + 1);
  const int *kperm = p.k_perm + (long long)hi.kh * p.M;

  for (int d = tid; d < D; d += THREADS)
    cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];
  for (int j = tid; j < CK; j += THREADS)
    isNear[j] = 0;
  __syncthreads();
  if constexpr (E > 0) {
    const int *nl = p.near + ((long long)bh * CQ + i) * E;
    for (int e = tid; e < E; e += THREADS) {
      const int j = nl[e];
      if (j >= 0)
        isNear[j] = 1;
    }
  }

  const MtS mtS(tid);
  const MtO mtO(tid);
  for (int n0 = 0; n0 < qcount; n0 += BQ) {
    const int tq = cmin(BQ, qcount - n0);
    __syncthreads(); // the previous query tile is done with rs, qidx, lse
    for (int r = tid; r < BQ; r += THREADS) {
      const int n = r < tq ? qperm[n0 + r] : -1;
      qidx[r] = n;
      lse[r] = r < tq ? p.row_lse[(long long)bh * p.N + n] : 0.f;
    }
    __syncthreads();
    for (int e = tid; e < BQ * D; e += THREADS) {
      const int r = e / D, d = e - r * D;
      rs[r][d] = r < tq ? __fsub_rn(scaled(p, loadf<T>(p.q, qRow(p, hi.b, hi.h, qidx[r]) + d)), cen[d]) : 0.f;
    }

    for (int a0 = 0; a0 < DV; a0 += DVT) {
      float acc[MtO::TM][MtO::TN] = {};
      for (int j = 0; j < CK; ++j) {
        const float lnm = sum_i[(long long)j * F];
        if (lnm == -kInf() || isNear[j])
          continue; // uniform over the block: empty or exact
        __syncthreads(); // the previous pair is done with kbar, vbar, prob, sig
        for (int d = tid; d < D; d += THREADS)
          kbar[d] = sum_i[(long long)j * F + 1 + d];
        for (int a = tid; a < DVT; a += THREADS)
          vbar[a] = sum_i[(long long)j * F + 1 + D + a0 + a];
        __syncthreads();
        for (int r = tid; r < BQ; r += THREADS)
          prob[r] = r < tq ? expf(lnm + dot<D>(rs[r], kbar) - lse[r]) : 0.f;

        float sg[MtS::TM][MtS::TN] = {};
        const int kstart = koff[j], kcount = koff[j + 1] - kstart;
        for (int l0 = 0; l0 < kcount; l0 += BK) {
          const int tk = cmin(BK, kcount - l0);
          __syncthreads(); // the previous key tile is no longer read
          // Each thread reads its rows' key index itself: no dependent round trip.
          for (int e = tid; e < BK * D; e += THREADS) {
            const int l = e / D, d = e - l * D;
            ks[l][d] = l < tk ? loadf<T>(p.k, kRow(p, hi.kh, kperm[kstart + l0 + l]) + d) : 0.f;
          }
          for (int e = tid; e < BK * DVT; e += THREADS) {
            const int l = e / DVT, a = e - l * DVT;
            vs[l][a] = l < tk ? loadf<T>(p.v, vRow(p, hi.kh, kperm[kstart + l0 + l]) + a0 + a) : 0.f;
          }
          __syncthreads();
          // w_l / Z = e^{qbar . k_l - lnmass}: GROUP threads per key, partial
          // dots over strided components, reduced by shuffles.
          for (int e = tid; e < BK * kGroup; e += THREADS) {
            const int l = e / kGroup, g = e - l * kGroup;
            float part = 0.f;
#pragma unroll
            for (int d = g; d < D; d += kGroup)
              part = fmaf(cen[d], ks[l][d], part);
#pragma unroll
            for (int s = kGroup / 2; s > 0; s >>= 1)
              part += __shfl_xor_sync(0xffffffffu, part, s, kGroup);
            if (g == 0)
              wk[l] = l < tk ? expf(part - lnm) : 0.f;
          }
          __syncthreads();
          for (int e = tid; e < BK * D; e += THREADS) {
            const int l = e / D, d = e - l * D;
            ks[l][d] -= kbar[d];
          }
          for (int e = tid; e < BK * DVT; e += THREADS) {
            const int l = e / DVT, a = e - l * DVT;
            vs[l][a] = wk[l] * (vs[l][a] - vbar[a]);
          }
          __syncthreads();
          // Sigma(a, d) += sum_l vs[l][a] ks[l][d]
          gemmAccumulate<1, DVT, D + 1, 1>(mtS, sg, &vs[0][0], &ks[0][0], tk);
        }
#pragma unroll
        for (int r = 0; r < MtS::TM; ++r)
#pragma unroll
          for (int c = 0; c < MtS::TN; ++c)
            if (mtS.valid(r, c))
              sig[mtS.row(r)][mtS.col(c)] = sg[r][c];
        __syncthreads();
        // acc(n, a) += p_nj * (r_n . Sigma_ij[a])
        float y[MtO::TM][MtO::TN] = {};
        gemmAccumulate<D + 1, 1, 1, D + 1>(mtO, y, &rs[0][0], &sig[0][0], D);
#pragma unroll
        for (int r = 0; r < MtO::TM; ++r)
#pragma unroll
          for (int c = 0; c < MtO::TN; ++c)
            acc[r][c] = fmaf(prob[mtO.row(r) < BQ ? mtO.row(r) : 0], y[r][c], acc[r][c]);
      }
#pragma unroll
      for (int r = 0; r < MtO::TM; ++r) {
        const int q = mtO.row(r);
        if (q >= tq)
          continue;
        float *o = p.o + oRow(p, hi.b, hi.h, qidx[q]) + a0;
#pragma unroll
        for (int c = 0; c < MtO::TN; ++c)
          if (mtO.valid(r, c))
            o[mtO.col(c)] += acc[r][c];
      }
    }
  }
}

/// Tiles of the tensor-core path (16-bit inputs): warp u < DV/16 owns value
/// rows 16u..16u+15 of Sigma_ij and the same 16 output columns of every query
/// of the tile, so Sigma's accumulator fragments are directly the B fragments
/// of the apply product (no round trip through shared memory).
template <class Cfg> struct DipoleMmaTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV, W = Cfg::THREADS / 32, UNITS = DV / 16;
  static constexpr bool kEnabled = TensorCoreType<typename Cfg::T>::value && W >= UNITS;
  __host__ __device__ static constexpr int bytes(int bq, int lk) {
    return 2 * (bq * (D + 8) + lk * (D + 8) + lk * (DV + 8)) + 4 * (3 * bq + 2 * D + DV + lk) + Cfg::CK + 64;
  }
  // Keys per chunk: 64, halved (to 16) before the query tile (128 = 64
  // accumulator registers per lane) is halved, until 48 KB fit.
  __host__ __device__ static constexpr int fitLK(int bq, int lk) {
    return bytes(bq, lk) <= kSharedBudget ? lk : lk > 16 ? fitLK(bq, lk / 2) : lk;
  }
  __host__ __device__ static constexpr int fitBQ(int bq) {
    return bytes(bq, fitLK(bq, 64)) <= kSharedBudget || bq <= 16 ? bq : fitBQ(bq / 2);
  }
  static constexpr int BQ = fitBQ(128);
  static constexpr int LK = fitLK(BQ, 64);
};

/// 16-bit path, Grid (CQ, B*H), block THREADS. Per query tile of cluster i and
/// far key cluster j: the centred, weighted keys and values of j pass through
/// shared memory in chunks of LK keys; Sigma_ij = Vc^T Kc on the tensor cores
/// (fp32 accumulators); then Y += diag(p_j) R Sigma_ij^T on the tensor cores,
/// Y accumulating over j in registers, added to o once per tile. The residuals
/// r_n are rounded to T (the dipole term is a correction; the logits of p_nj
/// are formed from the same rounded r_n in fp32).
template <class Cfg> __device__ void dipoleMma(const MuseParams &p) {
  using Tl = DipoleMmaTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, THREADS = Cfg::THREADS;
  constexpr int E = Cfg::NEAR, BQ = Tl::BQ, LK = Tl::LK, F = 1 + D + DV, UNITS = Tl::UNITS;
  constexpr int DS = D / 8, VS = DV / 8; // 8-element segments of a key, of a value
  using T = typename Cfg::T;
  static_assert(D % 16 == 0 && DV % 16 == 0 && BQ % 16 == 0 && LK % 16 == 0, "tensor-core tiles are 16 wide");

  __shared__ __align__(16) T rs[BQ][D + 8];  // r_n, padded rows: conflict-free fragments
  __shared__ __align__(16) T ks[LK][D + 8];  // k_l - kbar
  __shared__ __align__(16) T vs[LK][DV + 8]; // (w_l / Z)(v_l - vbar)
  __shared__ float prob[BQ], lse[BQ];
  __shared__ int qidx[BQ];
  __shared__ float cen[D], kbar[D], vbar[DV], wk[LK];
  __shared__ unsigned char isNear[CK];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const int i = blockIdx.x, bh = blockIdx.y;
  const HeadIndex hi(p, bh);
  const int *qoff = p.q_offsets + (long long)bh * (CQ + 1);
  const int qstart = qoff[i], qcount = qoff[i + 1] - qstart;
  if (qcount == 0)
    return;
  const int *qperm = p.q_perm + (long long)bh * p.N + qstart;
  const float *sum_i = p.summaries + ((long long)bh * CQ + i) * CK * F;
  const int *koff = p.k_offsets + (long long)hi.kh * (CK + 1);
  const int *kperm = p.k_perm + (long long)hi.kh * p.M;

  for (int d = tid; d < D; d += THREADS)
    cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];
  for (int j = tid; j < CK; j += THREADS)
    isNear[j] = 0;
  __syncthreads();
  if constexpr (E > 0) {
    const int *nl = p.near + ((long long)bh * CQ + i) * E;
    for (int e = tid; e < E; e += THREADS) {
      const int j = nl[e];
      if (j >= 0)
        isNear[j] = 1;
    }
  }

  const int u = warp; // value rows 16u..16u+15 (warps >= UNITS only load)
  for (int n0 = 0; n0 < qcount; n0 += BQ) {
    const int tq = cmin(BQ, qcount - n0);
    __syncthreads(); // the previous query tile is done with rs, qidx, lse
    for (int r = tid; r < BQ; r += THREADS) {
      const int n = r < tq ? qperm[n0 + r] : -1;
      qidx[r] = n;
      lse[r] = r < tq ? p.row_lse[(long long)bh * p.N + n] : 0.f;
    }
    __syncthreads();
    for (int e = tid; e < BQ * DS; e += THREADS) {
      const int r = e / DS, sg = e - r * DS;
      float x[8] = {};
      if (r < tq) {
        load8<T>(p.q, qRow(p, hi.b, hi.h, qidx[r]) + 8 * sg, x);
#pragma unroll
        for (int c = 0; c < 8; ++c)
          x[c] = __fsub_rn(scaled(p, x[c]), cen[8 * sg + c]);
      }
      uint4 pk;
      pk.x = pack2<T>(x[0], x[1]);
      pk.y = pack2<T>(x[2], x[3]);
      pk.z = pack2<T>(x[4], x[5]);
      pk.w = pack2<T>(x[6], x[7]);
      *reinterpret_cast<uint4 *>(&rs[r][8 * sg]) = pk;
    }

    float y[BQ / 16][2][4] = {};
    for (int j = 0; j < CK; ++j) {
      const float lnm = sum_i[(long long)j * F];
      if (lnm == -kInf() || isNear[j])
        continue; // uniform over the block: empty or exact
      __syncthreads(); // the previous pair is done with kbar, vbar, prob, ks, vs
      for (int d = tid; d < D; d += THREADS)
        kbar[d] = sum_i[(long long)j * F + 1 + d];
      for (int a = tid; a < DV; a += THREADS)
        vbar[a] = sum_i[(long long)j * F + 1 + D + a];
      __syncthreads();
      for (int r = tid; r < BQ; r += THREADS) {
        float s = 0.f;
#pragma unroll 8
        for (int d = 0; d < D; d += 2) {
          const float2 rr = unpack2<T>(lds32(&rs[r][d]));
          s = fmaf(rr.x, kbar[d], s);
          s = fmaf(rr.y, kbar[d + 1], s);
        }
        prob[r] = r < tq ? expf(lnm + s - lse[r]) : 0.f;
      }

      float sg[D / 8][4] = {};
      const int kstart = koff[j], kcount = koff[j + 1] - kstart;
      for (int l0 = 0; l0 < kcount; l0 += LK) {
        const int tk = cmin(LK, kcount - l0);
        __syncthreads(); // the previous chunk is no longer read
        // Keys: DS threads per key (contiguous lanes); w_l / Z from a shuffle-reduced dot.
        for (int e0 = 0; e0 < LK * DS; e0 += THREADS) {
          const int e = e0 + tid, l = e / DS, sgm = e - l * DS;
          const bool live = e < LK * DS && l < tk;
          float kv[8] = {};
          if (live)
            load8<T>(p.k, kRow(p, hi.kh, kperm[kstart + l0 + l]) + 8 * sgm, kv);
          float part = 0.f;
#pragma unroll
          for (int c = 0; c < 8; ++c)
            part = fmaf(cen[8 * sgm + c], kv[c], part);
#pragma unroll
          for (int off = DS / 2; off > 0; off >>= 1)
            part += __shfl_xor_sync(0xffffffffu, part, off);
          if (e < LK * DS) {
            if (sgm == 0)
              wk[l] = live ? expf(part - lnm) : 0.f;
            float c8[8];
#pragma unroll
            for (int c = 0; c < 8; ++c)
              c8[c] = live ? kv[c] - kbar[8 * sgm + c] : 0.f;
            uint4 pk;
            pk.x = pack2<T>(c8[0], c8[1]);
            pk.y = pack2<T>(c8[2], c8[3]);
            pk.z = pack2<T>(c8[4], c8[5]);
            pk.w = pack2<T>(c8[6], c8[7]);
            *reinterpret_cast<uint4 *>(&ks[l][8 * sgm]) = pk;
          }
        }
        __syncthreads();
        for (int e = tid; e < LK * VS; e += THREADS) {
          const int l = e / VS, sgm = e - l * VS;
          float vv[8] = {};
          if (l < tk) {
            load8<T>(p.v, vRow(p, hi.kh, kperm[kstart + l0 + l]) + 8 * sgm, vv);
            const float w = wk[l];
#pragma unroll
            for (int c = 0; c < 8; ++c)
              vv[c] = w * (vv[c] - vbar[8 * sgm + c]);
          }
          uint4 pk;
          pk.x = pack2<T>(vv[0], vv[1]);
          pk.y = pack2<T>(vv[2], vv[3]);
          pk.z = pack2<T>(vv[4], vv[5]);
          pk.w = pack2<T>(vv[6], vv[7]);
          *reinterpret_cast<uint4 *>(&vs[l][8 * sgm]) = pk;
        }
        __syncthreads();
        if (u < UNITS) {
          // Sigma(a, d) += sum_l vs[l][a] ks[l][d], a in 16u..16u+15
#pragma unroll
          for (int kk = 0; kk < LK / 16; ++kk) {
            if (16 * kk >= tk)
              break;
            unsigned a[4];
            loadATrans<DV + 8>(a, &vs[0][0], 16 * u, 16 * kk, lane);
#pragma unroll
            for (int np = 0; np < D / 16; ++np) {
              unsigned b[4];
              loadBTrans<D + 8>(b, &ks[0][0], 16 * kk, 16 * np, lane);
              mma16816<T>(sg[2 * np], a, b[0], b[1]);
              mma16816<T>(sg[2 * np + 1], a, b[2], b[3]);
            }
          }
        }
      }
      if (u < UNITS) {
        // Sigma's accumulators as B fragments (k = d, n = a): lo for a = 16u + g,
        // hi for a = 16u + 8 + g.
        unsigned blo[D / 16][2], bhi[D / 16][2];
#pragma unroll
        for (int kd = 0; kd < D / 16; ++kd) {
          blo[kd][0] = pack2<T>(sg[2 * kd][0], sg[2 * kd][1]);
          blo[kd][1] = pack2<T>(sg[2 * kd + 1][0], sg[2 * kd + 1][1]);
          bhi[kd][0] = pack2<T>(sg[2 * kd][2], sg[2 * kd][3]);
          bhi[kd][1] = pack2<T>(sg[2 * kd + 1][2], sg[2 * kd + 1][3]);
        }
#pragma unroll
        for (int mt = 0; mt < BQ / 16; ++mt) {
          if (16 * mt < tq) {
            const float p0 = prob[16 * mt + g], p1 = prob[16 * mt + g + 8];
#pragma unroll
            for (int kd = 0; kd < D / 16; ++kd) {
              unsigned a[4];
              float2 f = unpack2<T>(lds32(&rs[16 * mt + g][16 * kd + 2 * t4]));
              a[0] = pack2<T>(f.x * p0, f.y * p0);
              f = unpack2<T>(lds32(&rs[16 * mt + g + 8][16 * kd + 2 * t4]));
              a[1] = pack2<T>(f.x * p1, f.y * p1);
              f = unpack2<T>(lds32(&rs[16 * mt + g][16 * kd + 8 + 2 * t4]));
              a[2] = pack2<T>(f.x * p0, f.y * p0);
              f = unpack2<T>(lds32(&rs[16 * mt + g + 8][16 * kd + 8 + 2 * t4]));
              a[3] = pack2<T>(f.x * p1, f.y * p1);
              mma16816<T>(y[mt][0], a, blo[kd][0], blo[kd][1]);
              mma16816<T>(y[mt][1], a, bhi[kd][0], bhi[kd][1]);
            }
          }
        }
      }
    }
    if (u < UNITS) {
#pragma unroll
      for (int mt = 0; mt < BQ / 16; ++mt)
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
          const int n = 16 * mt + g + 8 * rr;
          if (n >= tq)
            continue;
          float *o = p.o + oRow(p, hi.b, hi.h, qidx[n]) + 16 * u + 2 * t4;
#pragma unroll
          for (int hf = 0; hf < 2; ++hf) {
            o[8 * hf] += y[mt][hf][2 * rr];
            o[8 * hf + 1] += y[mt][hf][2 * rr + 1];
          }
        }
    }
  }
}

/// Grid (CQ, B*H), block THREADS: the tensor-core path for 16-bit inputs when
/// the block has a warp per 16 value rows, the exact fp32 path otherwise.
template <class Cfg> __device__ void dipole(const MuseParams &p) {
  if constexpr (DipoleMmaTiles<Cfg>::kEnabled)
    dipoleMma<Cfg>(p);
  else
    dipoleExact<Cfg>(p);
}

} // namespace muse

#endif // MUSE_TEMPLATES_DIPOLE_CUH
