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

/// One pass of Sigma_ij in fp32: value rows a0 .. a0 + DVT, all D key
/// columns, into the micro tile `sg` of `mt` (MicroTile<DVT, D, THREADS>).
/// The kcount members of key cluster j (kperm: the cluster's slice of k_perm)
/// stream in tiles of BK keys gathered from K and V; w_l / Z = e^{qbar . k_l - lnm}
/// by GROUP threads a key (strided partial dots reduced by shuffles), then
///   sg(a, d) += sum_l (w_l / Z)(v_l - vbar)_{a0 + a} (k_l - kbar)_d
/// in ascending key order. Shared memory: ks BK x (D + 1), vs BK x DVT, wk BK
/// floats; cen, kbar (D) and vbar (the pass's DVT rows) are read from shared
/// memory too. Starts with a barrier (the caller's earlier reads of ks, vs
/// are over); the caller puts one between this and any reuse of them.
template <class Cfg, int DVT, int BK, int THREADS, class Mt, int TM, int TN>
__device__ void sigmaPassExact(const MuseParams &p, int kh, const int *kperm, int kcount, int a0, float lnm,
                               const float *cen, const float *kbar, const float *vbar, float *ks, float *vs,
                               float *wk, const Mt &mt, float (&sg)[TM][TN]) {
  constexpr int D = Cfg::D, DP = D + 1;
  using T = typename Cfg::T;
  constexpr int kGroup = cmin(32, cmax(1, THREADS / BK)); // threads per key: a warp-aligned power of two
  static_assert(THREADS % kGroup == 0 && (BK * kGroup) % 32 == 0, "weight groups must fill whole warps");
  const int tid = threadIdx.x;
  for (int l0 = 0; l0 < kcount; l0 += BK) {
    const int tk = cmin(BK, kcount - l0);
    __syncthreads(); // the previous key tile is no longer read
    // Each thread reads its rows' key index itself: no dependent round trip.
    for (int e = tid; e < BK * D; e += THREADS) {
      const int l = e / D, d = e - l * D;
      ks[l * DP + d] = l < tk ? loadf<T>(p.k, kRow(p, kh, kperm[l0 + l]) + d) : 0.f;
    }
    for (int e = tid; e < BK * DVT; e += THREADS) {
      const int l = e / DVT, a = e - l * DVT;
      vs[l * DVT + a] = l < tk ? loadf<T>(p.v, vRow(p, kh, kperm[l0 + l]) + a0 + a) : 0.f;
    }
    __syncthreads();
    for (int e = tid; e < BK * kGroup; e += THREADS) {
      const int l = e / kGroup, g = e - l * kGroup;
      float part = 0.f;
#pragma unroll
      for (int d = g; d < D; d += kGroup)
        part = fmaf(cen[d], ks[l * DP + d], part);
#pragma unroll
      for (int s = kGroup / 2; s > 0; s >>= 1)
        part += __shfl_xor_sync(0xffffffffu, part, s, kGroup);
      if (g == 0)
        wk[l] = l < tk ? expf(part - lnm) : 0.f;
    }
    __syncthreads();
    for (int e = tid; e < BK * D; e += THREADS) {
      const int l = e / D, d = e - l * D;
      ks[l * DP + d] -= kbar[d];
    }
    for (int e = tid; e < BK * DVT; e += THREADS) {
      const int l = e / DVT, a = e - l * DVT;
      vs[l * DVT + a] = wk[l] * (vs[l * DVT + a] - vbar[a]);
    }
    __syncthreads();
    gemmAccumulate<1, DVT, DP, 1>(mt, sg, vs, ks, tk);
  }
}

/// fp32 path: Grid (CQ, B*H), block THREADS.
template <class Cfg> __device__ void dipoleExact(const MuseParams &p) {
  using Tl = DipoleTiles<Cfg>;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, THREADS = Cfg::THREADS;
  constexpr int E = Cfg::NEAR, BQ = Tl::BQ, BK = Tl::BK, DVT = Tl::DVT, F = 1 + D + DV;
  using T = typename Cfg::T;
  using MtS = MicroTile<DVT, D, THREADS>; // Sigma (value row a, key column d)
  using MtO = MicroTile<BQ, DVT, THREADS>; // output (query, value row)
  static_assert(DV % DVT == 0, "value-row tile must divide the value dim");

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
        sigmaPassExact<Cfg, DVT, BK, THREADS>(p, hi.kh, kperm + koff[j], koff[j + 1] - koff[j], a0, lnm, cen,
                                               kbar, vbar, &ks[0][0], &vs[0][0], wk, mtS, sg);
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

/// Row width (elements of T) of the dipole's key/value copy: keys, then values.
template <class Cfg> __host__ __device__ constexpr int dipoleRowWidth() { return Cfg::D + Cfg::DV; }

/// Tiles of the tensor-core path (16-bit inputs). The block's W warps hold
/// QC = 16 MQ W queries of cluster i in registers (warp w: MQ m16 tiles of
/// rows, their residuals as A fragments and their output columns as fp32
/// accumulators) for the whole sweep over the key clusters, so each Sigma_ij
/// is formed once per query chunk and applied to all of its queries. Sigma is
/// formed DVT value rows at a time (a pass), the warps splitting the DVT x D
/// tile WA x WD; keys stream through a double buffer of LK rows.
template <class Cfg> struct DipoleMmaTiles {
  static constexpr int D = Cfg::D, DV = Cfg::DV, CK = Cfg::CK, W = Cfg::THREADS / 32;
  static constexpr int JG = 8; // key clusters per logit tile (one n8 MMA tile)
  // Value rows of Sigma per pass: at most 32 fp32 accumulators of Sigma per lane.
  static constexpr int DVT = cmin(DV, cmax(16, floorPow2(cmax(1, 1024 * W / D))));
  // Warp grid of the Sigma tile: WA value-row groups x W/WA key-column groups,
  // each at least 16 wide, the pair that loads the fewest fragments per k step.
  __host__ __device__ static constexpr bool waOk(int wa) {
    return wa <= W && W % wa == 0 && DVT / wa >= 16 && DVT % (16 * wa) == 0 && D / (W / wa) >= 16 &&
           D % (16 * (W / wa)) == 0;
  }
  __host__ __device__ static constexpr int waCost(int wa) { return DVT / wa + D * wa / W; }
  __host__ __device__ static constexpr int bestWA(int wa, int best) {
    return wa > W ? best : bestWA(2 * wa, waOk(wa) && (!waOk(best) || waCost(wa) < waCost(best)) ? wa : best);
  }
  static constexpr int WA = bestWA(1, 1);
  // m16 query tiles per warp: about 96 registers of output and residual
  // fragments, at most two (more spill next to Sigma's accumulators).
  static constexpr int MQ = cmin(2, cmax(1, 96 / (DVT / 2 + D / 4)));
  static constexpr int QC = 16 * MQ * W;
  __host__ __device__ static constexpr int bytes(int lk) {
    return 2 * DVT * (D + 8) + 2 * 2 * lk * ((D + 8) + (DVT + 8)) +
           4 * (JG * (D + 8) + JG * DVT + D + 2 * CK + 2 * QC + CK + 1 + lk) + CK;
  }
  // Keys per chunk: 64, less in steps of 16 until 48 KB fit.
  __host__ __device__ static constexpr int fitLK(int lk) {
    return bytes(lk) <= kSharedBudget || lk <= 16 ? lk : fitLK(lk - 16);
  }
  static constexpr int LK = fitLK(64);
  static constexpr bool kEnabled = TensorCoreType<typename Cfg::T>::value && D % 16 == 0 && DV % 16 == 0 &&
                                   D <= 128 && DV % DVT == 0 && waOk(WA) && bytes(LK) <= kSharedBudget;
};

/// The dipole's cluster-ordered copy of K and V (16-bit inputs), once per
/// key head before dipoleMma: for every key cluster j, its mean key mu_j and
/// mean value nu_j (fp32, dipole_means [kh, CK, D + DV]) and its members'
/// rows k_l - mu_j, v_l - nu_j rounded to T, contiguous in k_perm order
/// (dipole_kv [kh, M, D + DV]). Every query cluster then streams cluster j
/// as one contiguous run instead of gathering and centring it again, and the
/// centring keeps the covariance's rounding relative to the cluster's spread
/// rather than to its mean. Grid (CK, kv heads), block THREADS. Returns at
/// once where the dipole takes the fp32 path (DipoleMmaTiles::kEnabled false).
template <class Cfg> __device__ void dipole_prep(const MuseParams &p) {
  if constexpr (!DipoleMmaTiles<Cfg>::kEnabled)
    return;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, CK = Cfg::CK, THREADS = Cfg::THREADS, F2 = dipoleRowWidth<Cfg>();
  constexpr int RB = 128; // member rows whose offsets are staged at a time
  __shared__ long long rowS[RB][2];
  const int tid = threadIdx.x, j = blockIdx.x, kh = blockIdx.y;
  const int *koff = p.k_offsets + (long long)kh * (CK + 1);
  const int kstart = koff[j], cnt = koff[j + 1] - kstart;
  const int *kperm = p.k_perm + (long long)kh * p.M + kstart;
  const T *kg = static_cast<const T *>(p.k), *vg = static_cast<const T *>(p.v);
  T *out = reinterpret_cast<T *>(p.dipole_kv) + ((long long)kh * p.M + kstart) * F2;
  float *mean = p.dipole_means + ((long long)kh * CK + j) * F2;
  // Column c of a member row: key column c (c < D) or value column c - D.
  auto at = [&](int r, int c) {
    return c < D ? loadf<T>(kg, rowS[r][0] + c) : loadf<T>(vg, rowS[r][1] + (c - D));
  };
  constexpr int CPT = cdiv(F2, THREADS); // columns a thread owns
  float sum[CPT];
#pragma unroll
  for (int u = 0; u < CPT; ++u)
    sum[u] = 0.f;
  for (int pass = 0; pass < 2; ++pass) {
    for (int r0 = 0; r0 < cnt; r0 += RB) {
      const int rn = cmin(RB, cnt - r0);
      __syncthreads(); // the previous rows are no longer read
      for (int r = tid; r < rn; r += THREADS) {
        const int m = kperm[r0 + r];
        rowS[r][0] = kRow(p, kh, m);
        rowS[r][1] = vRow(p, kh, m);
      }
      __syncthreads();
#pragma unroll
      for (int u = 0; u < CPT; ++u) {
        const int c = tid + u * THREADS;
        if (c >= F2)
          continue;
        if (pass == 0) {
          for (int r = 0; r < rn; ++r)
            sum[u] += at(r, c);
        } else {
          for (int r = 0; r < rn; ++r)
            out[(long long)(r0 + r) * F2 + c] = fromFloat<T>(at(r, c) - sum[u]);
        }
      }
    }
    if (pass == 0) {
#pragma unroll
      for (int u = 0; u < CPT; ++u) {
        const int c = tid + u * THREADS;
        sum[u] = cnt > 0 ? sum[u] / cnt : 0.f; // the mean from here on
        if (c < F2)
          mean[c] = sum[u];
      }
    }
  }
}

/// 16-bit path, Grid (CQ, B*H), block THREADS, after dipole_prep. For each
/// chunk of QC queries of cluster i and each pass of DVT value rows:
///  - the residuals r_n (rounded to T, as far_field's hi part) become A
///    fragments held in registers for the whole sweep;
///  - per tile of JG key clusters, the logits s_nj = lnmass_ij + r_n . kbar_ij
///    of all the chunk's queries come from one MMA (kbar split into T hi + lo,
///    fp32 accumulators) and p_nj = e^{s_nj - lse_n} stays in registers;
///  - the centred rows of each far cluster j (dipole_prep) stream through a
///    cp.async double buffer, one contiguous run a chunk (the next chunk is
///    in flight while this one is weighted and multiplied);
///  - w_l / Z = e^{qbar_i . k_l - lnmass_ij} of a chunk's keys from one MMA a
///    16-key group (qbar split into T hi + lo as the two columns of B), the
///    centred values scaled by it in place (packed 16-bit multiplies);
///  - Sigma_ij = E_w[(v - nu_j)(k - mu_j)^T] - (vbar_ij - nu_j)(kbar_ij - mu_j)^T:
///    the first term on the tensor cores with fp32 accumulators, the rank-one
///    correction in fp32, then stored once in shared memory as T;
///  - every warp applies it to its own queries: Z = R Sigma^T (MMA), then
///    Y += p_nj Z in fp32; Y is added to o once per chunk and pass.
/// Barriers: three per key chunk, one per cluster, two per logit tile.
template <class Cfg> __device__ void dipoleMma(const MuseParams &p) {
  using Tl = DipoleMmaTiles<Cfg>;
  using T = typename Cfg::T;
  constexpr int D = Cfg::D, DV = Cfg::DV, CQ = Cfg::CQ, CK = Cfg::CK, THREADS = Cfg::THREADS;
  constexpr int E = Cfg::NEAR, F = 1 + D + DV, JG = Tl::JG, DVT = Tl::DVT;
  constexpr int W = Tl::W, WA = Tl::WA, WD = W / WA, MA = DVT / WA, ND = D / WD;
  constexpr int MQ = Tl::MQ, QC = Tl::QC, LK = Tl::LK, F2 = dipoleRowWidth<Cfg>();
  constexpr int KD = D / 16, NT = DVT / 8, DS = D / 8, VST = DVT / 8, SPR = DS + VST;
  constexpr int LDK = D + 8, LDV = DVT + 8; // padded rows: conflict-free fragments
  static_assert(LK % 16 == 0, "key chunks are whole k16 steps");

  __shared__ __align__(16) T sig[DVT][LDK];     // Sigma_ij, value rows a0.. of the pass
  __shared__ __align__(16) T kst[2][LK][LDK];   // k_l - mu_j
  __shared__ __align__(16) T vst[2][LK][LDV];   // v_l - nu_j, then (w_l / Z)(v_l - nu_j)
  __shared__ __align__(16) float kbg[JG][D + 8]; // kbar of the logit tile's clusters
  __shared__ float vbg[JG][DVT];                // vbar (the pass's rows)
  __shared__ float cen[D];
  __shared__ float lnmS[CK];
  __shared__ float cmuS[CK]; // qbar_i . mu_j
  __shared__ float lseS[QC];
  __shared__ int qidxS[QC];
  __shared__ int koffS[CK + 1];
  __shared__ float wS[LK]; // w_l / Z_ij of the chunk's keys
  __shared__ unsigned char farS[CK]; // non-empty and not near

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
  const T *kvg = reinterpret_cast<const T *>(p.dipole_kv) + (long long)hi.kh * p.M * F2;
  const float *means = p.dipole_means + (long long)hi.kh * CK * F2;

  for (int d = tid; d < D; d += THREADS)
    cen[d] = p.q_centroids[((long long)bh * CQ + i) * D + d];
  for (int j = tid; j <= CK; j += THREADS)
    koffS[j] = koff[j];
  for (int j = tid; j < CK; j += THREADS) {
    const float lnm = sum_i[(long long)j * F];
    lnmS[j] = lnm;
    farS[j] = lnm != -kInf() && koff[j + 1] > koff[j];
  }
  __syncthreads();
  for (int j = tid; j < CK; j += THREADS) {
    float s = 0.f;
    for (int d = 0; d < D; ++d)
      s = fmaf(cen[d], means[(long long)j * F2 + d], s);
    cmuS[j] = s;
  }
  if constexpr (E > 0) {
    const int *nl = p.near + ((long long)bh * CQ + i) * E;
    for (int e = tid; e < E; e += THREADS) {
      const int j = nl[e];
      if (j >= 0)
        farS[j] = 0;
    }
  }
  __syncthreads();
  // The key stream: (cluster j, first key l0) of each chunk; j = CK ends it.
  auto nextFar = [&](int j) {
    while (j < CK && !farS[j])
      ++j;
    return j;
  };
  const int jFirst = nextFar(0);
  if (jFirst >= CK)
    return; // no far cluster: nothing to add (uniform over the block)
  auto advance = [&](int &j, int &l0) {
    l0 += LK;
    if (l0 >= koffS[j + 1] - koffS[j]) {
      l0 = 0;
      j = nextFar(j + 1);
    }
  };
  const int wa = warp / WD, wd = warp % WD;

  for (int n0 = 0; n0 < qcount; n0 += QC) {
    const int tq = cmin(QC, qcount - n0);
    __syncthreads(); // the previous chunk is written out
    for (int r = tid; r < QC; r += THREADS) {
      const int n = r < tq ? qperm[n0 + r] : -1;
      qidxS[r] = n;
      lseS[r] = r < tq ? p.row_lse[(long long)bh * p.N + n] : 0.f;
    }
    __syncthreads();
    // A fragments of r = x - qbar_i, rounded to T (a_{rr + 2h}: row g + 8 rr, columns 16 kd + 2 t4 + 8 h).
    unsigned ra[MQ][KD][4];
#pragma unroll
    for (int m = 0; m < MQ; ++m)
#pragma unroll
      for (int rr = 0; rr < 2; ++rr) {
        const int row = (warp * MQ + m) * 16 + g + 8 * rr;
        const bool live = row < tq;
        const T *qr = static_cast<const T *>(p.q) + qRow(p, hi.b, hi.h, live ? qidxS[row] : 0);
#pragma unroll
        for (int kd = 0; kd < KD; ++kd)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int col = 16 * kd + 2 * t4 + 8 * h;
            float a = 0.f, b = 0.f;
            if (live) {
              const float2 v = unpack2<T>(ldPair<T>(qr + col));
              a = __fsub_rn(scaled(p, v.x), cen[col]);
              b = __fsub_rn(scaled(p, v.y), cen[col + 1]);
            }
            ra[m][kd][rr + 2 * h] = pack2<T>(a, b);
          }
      }
    const bool warpLive = warp * MQ * 16 < tq;

    for (int a0 = 0; a0 < DV; a0 += DVT) {
      // Chunk (j, l0) into buffer buf: one contiguous run of centred rows
      // (16-byte aligned: F2 is a multiple of 16), zero rows past the cluster.
      auto issue = [&](int j, int l0, int buf) {
        const int tk = cmin(LK, koffS[j + 1] - koffS[j] - l0);
        const T *src = kvg + (long long)(koffS[j] + l0) * F2;
        for (int e = tid; e < LK * SPR; e += THREADS) {
          const int l = e / SPR, sg = e - l * SPR;
          T *dst = sg < DS ? &kst[buf][l][8 * sg] : &vst[buf][l][8 * (sg - DS)];
          if (l >= tk)
            *reinterpret_cast<uint4 *>(dst) = make_uint4(0u, 0u, 0u, 0u);
          else
            cpAsync16(dst, src + l * F2 + (sg < DS ? 8 * sg : D + a0 + 8 * (sg - DS)));
        }
        cpAsyncCommit();
      };

      float y[MQ][NT][4] = {};
      float acc[MA / 16][ND / 8][4] = {};
      float pr[MQ][4] = {}; // p_nj: rows g, g+8; clusters jt + 2 t4, +1
      int jt = -1;          // first cluster of the logit tile in kbg
      int cj = jFirst, cl = 0; // chunk being processed
      issue(cj, cl, 0);
      int nj = cj, nl = cl; // the chunk after it
      advance(nj, nl);

      for (int c = 0; cj < CK; ++c) {
        const int buf = c & 1;
        cpAsyncWaitAll();
        __syncthreads(); // chunk c has landed; every warp is done with chunk c-1 and sig
        if (cj / JG * JG != jt) {
          // New logit tile: kbar, vbar of JG clusters, then p_nj of all of them.
          jt = cj / JG * JG;
          for (int e = tid; e < JG * D; e += THREADS) {
            const int r = e / D, d = e - r * D;
            kbg[r][d] = jt + r < CK ? sum_i[(long long)(jt + r) * F + 1 + d] : 0.f;
          }
          for (int e = tid; e < JG * DVT; e += THREADS) {
            const int r = e / DVT, a = e - r * DVT;
            vbg[r][a] = jt + r < CK ? sum_i[(long long)(jt + r) * F + 1 + D + a0 + a] : 0.f;
          }
          __syncthreads();
          float sl[MQ][4] = {};
#pragma unroll
          for (int kd = 0; kd < KD; ++kd) {
            const float2 f0 = *reinterpret_cast<const float2 *>(&kbg[g][16 * kd + 2 * t4]);
            const float2 f1 = *reinterpret_cast<const float2 *>(&kbg[g][16 * kd + 8 + 2 * t4]);
            unsigned h0, l0, h1, l1;
            split2<T>(f0.x, f0.y, h0, l0);
            split2<T>(f1.x, f1.y, h1, l1);
#pragma unroll
            for (int m = 0; m < MQ; ++m) {
              mma16816<T>(sl[m], ra[m][kd], h0, h1);
              mma16816<T>(sl[m], ra[m][kd], l0, l1);
            }
          }
#pragma unroll
          for (int m = 0; m < MQ; ++m)
#pragma unroll
            for (int q = 0; q < 4; ++q) {
              const int row = (warp * MQ + m) * 16 + g + 8 * (q >> 1), j = jt + 2 * t4 + (q & 1);
              pr[m][q] = row < tq && j < CK && farS[j] ? expf(lnmS[j] + sl[m][q] - lseS[row]) : 0.f;
            }
        }
        int mj = nj, ml = nl; // the chunk after next
        if (nj < CK) {
          issue(nj, nl, buf ^ 1); // overlaps everything below
          advance(mj, ml);
        }

        const int kcount = koffS[cj + 1] - koffS[cj], tk = cmin(LK, kcount - cl), jj = cj - jt;
        // w_l / Z = e^{qbar . (k_l - mu_j) + qbar . mu_j - lnmass_ij}: warp w
        // takes the 16-key groups w, w + W, ...; lanes t4 = 0 hold two keys.
        {
          const float off = cmuS[cj] - lnmS[cj];
          for (int gk = warp; 16 * gk < tk; gk += W) {
            float s4[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int kd = 0; kd < KD; ++kd) {
              // qbar_i as B: column 0 its T part, column 1 the rest (b0, b1:
              // rows 2 t4 (+1) and 2 t4 + 8 (+1) of column g), zeros elsewhere.
              unsigned qb[2];
#pragma unroll
              for (int h = 0; h < 2; ++h) {
                const int d = 16 * kd + 2 * t4 + 8 * h;
                unsigned hi2, lo2;
                split2<T>(cen[d], cen[d + 1], hi2, lo2);
                qb[h] = g == 0 ? hi2 : g == 1 ? lo2 : 0u;
              }
              unsigned af[4];
              loadA<LDK, T>(af, &kst[buf][0][0], 16 * gk, 16 * kd, lane);
              mma16816<T>(s4, af, qb[0], qb[1]);
            }
            if (t4 == 0) {
              const int la = 16 * gk + g, lb = la + 8;
              wS[la] = la < tk ? expf(s4[0] + s4[1] + off) : 0.f;
              wS[lb] = lb < tk ? expf(s4[2] + s4[3] + off) : 0.f;
            }
          }
        }
        __syncthreads(); // wS
        // Weight the centred values in place (rows from tk on are zeros).
        for (int e = tid; e < tk * VST; e += THREADS) {
          const int l = e / VST, s = e - l * VST;
          uint4 *vp = reinterpret_cast<uint4 *>(&vst[buf][l][8 * s]);
          uint4 x = *vp;
          const float w = wS[l];
          const unsigned w2 = pack2<T>(w, w);
          x.x = mul2<T>(x.x, w2);
          x.y = mul2<T>(x.y, w2);
          x.z = mul2<T>(x.z, w2);
          x.w = mul2<T>(x.w, w2);
          *vp = x;
        }
        __syncthreads(); // chunk c is weighted

        // Sigma(a, d) += sum_l vst[l][a] kst[l][d] over this warp's MA x ND block.
#pragma unroll
        for (int kk = 0; kk < LK / 16; ++kk) {
          if (16 * kk >= tk)
            break;
          unsigned af[MA / 16][4];
#pragma unroll
          for (int ma = 0; ma < MA / 16; ++ma)
            loadATrans<LDV>(af[ma], &vst[buf][0][0], wa * MA + 16 * ma, 16 * kk, lane);
#pragma unroll
          for (int np = 0; np < ND / 16; ++np) {
            unsigned bb[4];
            loadBTrans<LDK>(bb, &kst[buf][0][0], 16 * kk, wd * ND + 16 * np, lane);
#pragma unroll
            for (int ma = 0; ma < MA / 16; ++ma) {
              mma16816<T>(acc[ma][2 * np], af[ma], bb[0], bb[1]);
              mma16816<T>(acc[ma][2 * np + 1], af[ma], bb[2], bb[3]);
            }
          }
        }

        if (cl + LK >= kcount) {
          // Sigma_ij is complete: the rank-one correction, stored as T, then
          // every warp applies it.
          const float *mu = means + (long long)cj * F2;
#pragma unroll
          for (int ma = 0; ma < MA / 16; ++ma) {
            const int a = wa * MA + 16 * ma + g;
            const float da0 = vbg[jj][a] - mu[D + a0 + a], da1 = vbg[jj][a + 8] - mu[D + a0 + a + 8];
#pragma unroll
            for (int nt = 0; nt < ND / 8; ++nt) {
              const int d = wd * ND + 8 * nt + 2 * t4;
              const float dk0 = kbg[jj][d] - mu[d], dk1 = kbg[jj][d + 1] - mu[d + 1];
              *reinterpret_cast<unsigned *>(&sig[a][d]) =
                  pack2<T>(fmaf(-da0, dk0, acc[ma][nt][0]), fmaf(-da0, dk1, acc[ma][nt][1]));
              *reinterpret_cast<unsigned *>(&sig[a + 8][d]) =
                  pack2<T>(fmaf(-da1, dk0, acc[ma][nt][2]), fmaf(-da1, dk1, acc[ma][nt][3]));
#pragma unroll
              for (int q = 0; q < 4; ++q)
                acc[ma][nt][q] = 0.f;
            }
          }
          // p_nj of this lane's rows: held by lane (g, jj / 2) of the quad.
          const int src = (lane & ~3) | (jj >> 1);
          const bool odd = jj & 1;
          float pa[MQ][2];
#pragma unroll
          for (int m = 0; m < MQ; ++m) {
            pa[m][0] = __shfl_sync(0xffffffffu, odd ? pr[m][1] : pr[m][0], src);
            pa[m][1] = __shfl_sync(0xffffffffu, odd ? pr[m][3] : pr[m][2], src);
          }
          __syncthreads(); // sig is complete
          if (warpLive) {
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
              float z[MQ][2][4] = {};
#pragma unroll
              for (int kd = 0; kd < KD; ++kd) {
                // b0/b1 of value rows 16 np + g (bb[0], bb[1]) and 16 np + 8 + g (bb[2], bb[3]).
                unsigned bb[4];
                ldsmX4(bb, &sig[16 * np + (lane & 7) + ((lane >> 4) & 1) * 8][16 * kd + ((lane >> 3) & 1) * 8]);
#pragma unroll
                for (int m = 0; m < MQ; ++m) {
                  mma16816<T>(z[m][0], ra[m][kd], bb[0], bb[1]);
                  mma16816<T>(z[m][1], ra[m][kd], bb[2], bb[3]);
                }
              }
#pragma unroll
              for (int m = 0; m < MQ; ++m)
#pragma unroll
                for (int h = 0; h < 2; ++h)
#pragma unroll
                  for (int q = 0; q < 4; ++q)
                    y[m][2 * np + h][q] = fmaf(pa[m][q >> 1], z[m][h][q], y[m][2 * np + h][q]);
            }
          }
        }
        cj = nj, cl = nl;
        nj = mj, nl = ml;
      }

      if (warpLive) {
#pragma unroll
        for (int m = 0; m < MQ; ++m)
#pragma unroll
          for (int rr = 0; rr < 2; ++rr) {
            const int row = (warp * MQ + m) * 16 + g + 8 * rr;
            if (row >= tq)
              continue;
            float *o = p.o + oRow(p, hi.b, hi.h, qidxS[row]) + a0 + 2 * t4;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
              o[8 * nt] += y[m][nt][2 * rr];
              o[8 * nt + 1] += y[m][nt][2 * rr + 1];
            }
          }
      }
    }
  }
}

/// Grid (CQ, B*H), block THREADS: the tensor-core path for 16-bit inputs
/// (DipoleMmaTiles::kEnabled), the exact fp32 path otherwise.
template <class Cfg> __device__ void dipole(const MuseParams &p) {
  if constexpr (DipoleMmaTiles<Cfg>::kEnabled)
    dipoleMma<Cfg>(p);
  else
    dipoleExact<Cfg>(p);
}

} // namespace muse

#endif // MUSE_TEMPLATES_DIPOLE_CUH
