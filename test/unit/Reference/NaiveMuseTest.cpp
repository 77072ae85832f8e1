//===- NaiveMuseTest.cpp - §3 written out term by term, on one head -------===//
//
// An independent, unstabilised transcription of ALGORITHM.md §3 (small O(1)
// data, so no overflow) on a given partition: checks the general case that
// the exactness invariants cannot see (r != 0 and Cov_ij != 0 together, and
// the top-E near-field selection).
//
//===----------------------------------------------------------------------===//
#include "RefTestUtil.h"

#include <algorithm>

using namespace muse::ref;
using namespace muse::ref::test;

namespace {

struct Naive {
  std::vector<double> o, lse;
};

Naive naiveMuse(const RefShape &sh, const Inputs &in, const Partitions &p, int Cq,
                int Ck, int order, int E) {
  const int64_t N = sh.N, M = sh.M, D = sh.D, Dv = sh.Dv;
  const double s = 1 / std::sqrt(double(D));
  auto x = [&](int64_t n, int64_t d) { return s * in.q[n * D + d]; };
  auto kk = [&](int64_t l, int64_t d) { return in.k[l * D + d]; };
  auto vv = [&](int64_t l, int64_t e) { return in.v[l * Dv + e]; };
  Naive out{std::vector<double>(N * Dv, 0.0), std::vector<double>(N, 0.0)};
  for (int i = 0; i < Cq; ++i) {
    std::vector<double> qbar(D, 0.0);
    int cnt = 0;
    for (int64_t n = 0; n < N; ++n)
      if (p.query[n] == i) {
        ++cnt;
        for (int64_t d = 0; d < D; ++d)
          qbar[d] += x(n, d);
      }
    if (cnt == 0)
      continue;
    for (double &e : qbar)
      e /= cnt;
    // Stage 1 with m_i = 0.
    std::vector<double> Z(Ck, 0.0), kb(Ck * D, 0.0), vb(Ck * Dv, 0.0),
        sig(Ck * Dv * D, 0.0);
    for (int j = 0; j < Ck; ++j) {
      for (int64_t l = 0; l < M; ++l) {
        if (p.key[l] != j)
          continue;
        double a = 0;
        for (int64_t d = 0; d < D; ++d)
          a += qbar[d] * kk(l, d);
        Z[j] += std::exp(a);
      }
      for (int64_t l = 0; l < M; ++l) {
        if (p.key[l] != j)
          continue;
        double a = 0;
        for (int64_t d = 0; d < D; ++d)
          a += qbar[d] * kk(l, d);
        double w = std::exp(a) / Z[j];
        for (int64_t d = 0; d < D; ++d)
          kb[j * D + d] += w * kk(l, d);
        for (int64_t e = 0; e < Dv; ++e)
          vb[j * Dv + e] += w * vv(l, e);
      }
      for (int64_t l = 0; l < M; ++l) {
        if (p.key[l] != j)
          continue;
        double a = 0;
        for (int64_t d = 0; d < D; ++d)
          a += qbar[d] * kk(l, d);
        double w = std::exp(a) / Z[j];
        for (int64_t e = 0; e < Dv; ++e)
          for (int64_t d = 0; d < D; ++d)
            sig[(j * Dv + e) * D + d] +=
                w * (vv(l, e) - vb[j * Dv + e]) * (kk(l, d) - kb[j * D + d]);
      }
    }
    // Top-E by mass ln Z_ij, ties to the lowest index, empty never.
    std::vector<int> cand;
    for (int j = 0; j < Ck; ++j)
      if (Z[j] > 0)
        cand.push_back(j);
    std::stable_sort(cand.begin(), cand.end(),
                     [&](int a, int b) { return Z[a] > Z[b]; });
    std::vector<bool> isNear(Ck, false);
    for (int t = 0; t < E && t < int(cand.size()); ++t)
      isNear[cand[t]] = true;
    // Stage 2.
    for (int64_t n = 0; n < N; ++n) {
      if (p.query[n] != i)
        continue;
      std::vector<double> r(D);
      for (int64_t d = 0; d < D; ++d)
        r[d] = x(n, d) - qbar[d];
      double den = 0;
      std::vector<double> num(Dv, 0.0);
      for (int j = 0; j < Ck; ++j) {
        if (Z[j] == 0)
          continue;
        if (isNear[j]) {
          for (int64_t l = 0; l < M; ++l) {
            if (p.key[l] != j)
              continue;
            double a = 0;
            for (int64_t d = 0; d < D; ++d)
              a += x(n, d) * kk(l, d);
            den += std::exp(a);
            for (int64_t e = 0; e < Dv; ++e)
              num[e] += std::exp(a) * vv(l, e);
          }
          continue;
        }
        double snj = std::log(Z[j]);
        for (int64_t d = 0; d < D; ++d)
          snj += r[d] * kb[j * D + d];
        den += std::exp(snj);
        for (int64_t e = 0; e < Dv; ++e) {
          double u = vb[j * Dv + e];
          if (order >= 1)
            for (int64_t d = 0; d < D; ++d)
              u += sig[(j * Dv + e) * D + d] * r[d];
          num[e] += std::exp(snj) * u;
        }
      }
      for (int64_t e = 0; e < Dv; ++e)
        out.o[n * Dv + e] = num[e] / den;
      out.lse[n] = std::log(den);
    }
  }
  return out;
}

TEST(NaiveMuse, ReferenceMatchesTheFormulasTermByTerm) {
  RefShape sh{1, 1, 1, 13, 17, 4, 3};
  Inputs in = randomInputs(sh, 61);
  Partitions p;
  std::mt19937_64 rng(62);
  for (int64_t n = 0; n < sh.N; ++n)
    p.query.push_back(int32_t(rng() % 4)); // 4 query clusters, some maybe empty
  for (int64_t l = 0; l < sh.M; ++l)
    p.key.push_back(int32_t(rng() % 5) + (l % 7 == 3)); // 6 key clusters
  for (int order : {0, 1})
    for (int E : {0, 1, 2}) {
      MuseConfig cfg;
      cfg.queryClusters = 4;
      cfg.keyClusters = 6;
      cfg.order = order;
      cfg.nearClusters = E;
      MuseForwardResult r;
      ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, &p, r).ok);
      Naive ref = naiveMuse(sh, in, p, 4, 6, order, E);
      EXPECT_LT(maxError(r.o, ref.o), 1e-12) << "order " << order << " E " << E;
      EXPECT_LT(maxError(r.lse, ref.lse), 1e-12) << "order " << order << " E " << E;
    }
}

TEST(NaiveMuse, DipoleAndNearFieldChangeTheResult) {
  // Guards the test above against comparing two identical degenerate paths.
  RefShape sh{1, 1, 1, 16, 16, 4, 3};
  Inputs in = randomInputs(sh, 63);
  MuseConfig cfg;
  cfg.queryClusters = 3;
  cfg.keyClusters = 4;
  MuseForwardResult a, b, c;
  cfg.order = 0;
  ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, nullptr, a).ok);
  cfg.order = 1;
  ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, nullptr, b).ok);
  cfg.nearClusters = 1;
  ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, nullptr, c).ok);
  EXPECT_GT(maxError(a.o, b.o), 1e-6);
  EXPECT_GT(maxError(b.o, c.o), 1e-6);
}

} // namespace
