//===- ExactTest.cpp - Exact attention: definition, GQA, gradients --------===//
#include "RefTestUtil.h"

using namespace muse::ref;
using namespace muse::ref::test;

namespace {

// Straight from the definition with no stabiliser (small logits).
double naiveOut(const Inputs &in, const RefShape &sh, double s, int64_t bh,
                int64_t n, int64_t e, int64_t keys, double *lse) {
  const int64_t kvh = sh.kvHeadOf(bh);
  double z = 0, acc = 0;
  for (int64_t l = 0; l < keys; ++l) {
    double a = 0;
    for (int64_t d = 0; d < sh.D; ++d)
      a += s * in.q[(bh * sh.N + n) * sh.D + d] * in.k[(kvh * sh.M + l) * sh.D + d];
    z += std::exp(a);
    acc += std::exp(a) * in.v[(kvh * sh.M + l) * sh.Dv + e];
  }
  *lse = std::log(z);
  return acc / z;
}

TEST(ExactAttention, MatchesDefinitionAcausalAndCausal) {
  for (bool causal : {false, true}) {
    RefShape sh{2, 4, 2, 9, causal ? 9 : 13, 5, 3};
    Inputs in = randomInputs(sh, 11);
    ForwardResult r;
    ASSERT_TRUE(exactForward(sh, causal, 0.0, in.q, in.k, in.v, r).ok);
    const double s = 1 / std::sqrt(5.0);
    for (int64_t bh = 0; bh < sh.B * sh.H; ++bh)
      for (int64_t n = 0; n < sh.N; ++n)
        for (int64_t e = 0; e < sh.Dv; ++e) {
          double lse;
          double o = naiveOut(in, sh, s, bh, n, e, causal ? n + 1 : sh.M, &lse);
          EXPECT_NEAR(r.o[(bh * sh.N + n) * sh.Dv + e], o, 1e-13);
          EXPECT_NEAR(r.lse[bh * sh.N + n], lse, 1e-13);
        }
  }
}

TEST(ExactAttention, ExplicitScaleIsFoldedIntoQueries) {
  RefShape sh{1, 1, 1, 4, 6, 3, 2};
  Inputs in = randomInputs(sh, 12);
  ForwardResult a, b;
  ASSERT_TRUE(exactForward(sh, false, 0.7, in.q, in.k, in.v, a).ok);
  std::vector<double> q = in.q;
  for (double &x : q)
    x *= 0.7 / (1 / std::sqrt(3.0));
  ASSERT_TRUE(exactForward(sh, false, 0.0, q, in.k, in.v, b).ok);
  EXPECT_LT(maxError(a.o, b.o), 1e-14);
  EXPECT_LT(maxError(a.lse, b.lse), 1e-14);
}

TEST(ExactAttention, GqaEqualsRepeatedKv) {
  RefShape sh{2, 8, 2, 7, 7, 4, 3};
  Inputs in = randomInputs(sh, 13);
  RefShape mha = sh;
  mha.Hkv = sh.H;
  std::vector<double> k = repeatKv(in.k, sh, sh.D), v = repeatKv(in.v, sh, sh.Dv);
  for (bool causal : {false, true}) {
    ForwardResult a, b;
    ASSERT_TRUE(exactForward(sh, causal, 0.0, in.q, in.k, in.v, a).ok);
    ASSERT_TRUE(exactForward(mha, causal, 0.0, in.q, k, v, b).ok);
    EXPECT_EQ(a.o, b.o);
    EXPECT_EQ(a.lse, b.lse);
  }
}

TEST(ExactAttention, BackwardMatchesFiniteDifferences) {
  struct Case {
    RefShape sh;
    bool causal;
    bool withLse;
  };
  for (const Case &c : {Case{{1, 2, 1, 5, 7, 4, 3}, false, true},
                        Case{{2, 4, 1, 6, 6, 3, 2}, true, true},
                        Case{{1, 1, 1, 1, 1, 2, 2}, false, false},
                        Case{{1, 2, 2, 6, 6, 3, 5}, true, false}}) {
    Inputs in = randomInputs(c.sh, 14);
    if (!c.withLse)
      in.dLse.clear();
    Gradients g;
    ASSERT_TRUE(exactBackward(c.sh, c.causal, 0.0, in.q, in.k, in.v, in.dO,
                              in.dLse, g)
                    .ok);
    Gradients fd = finiteDifferences(
        [&](const std::vector<double> &q, const std::vector<double> &k,
            const std::vector<double> &v, std::vector<double> &o,
            std::vector<double> &lse) {
          ForwardResult r;
          ASSERT_TRUE(exactForward(c.sh, c.causal, 0.0, q, k, v, r).ok);
          o = r.o;
          lse = r.lse;
        },
        in);
    expectGradientsMatch(g, fd);
  }
}

TEST(ExactAttention, CausalIgnoresTheFuture) {
  RefShape sh{1, 2, 1, 12, 12, 4, 3};
  Inputs in = randomInputs(sh, 15);
  const int64_t t = 6;
  Inputs pert = in;
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t p = t + 1; p < sh.N; ++p)
      for (int64_t d = 0; d < sh.D; ++d)
        pert.q[(h * sh.N + p) * sh.D + d] += 3.0;
  for (int64_t p = t + 1; p < sh.N; ++p) {
    for (int64_t d = 0; d < sh.D; ++d)
      pert.k[p * sh.D + d] -= 2.0;
    for (int64_t e = 0; e < sh.Dv; ++e)
      pert.v[p * sh.Dv + e] *= -5.0;
  }
  ForwardResult a, b;
  ASSERT_TRUE(exactForward(sh, true, 0.0, in.q, in.k, in.v, a).ok);
  ASSERT_TRUE(exactForward(sh, true, 0.0, pert.q, pert.k, pert.v, b).ok);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t p = 0; p <= t; ++p) {
      EXPECT_EQ(a.lse[h * sh.N + p], b.lse[h * sh.N + p]);
      for (int64_t e = 0; e < sh.Dv; ++e)
        EXPECT_EQ(a.o[(h * sh.N + p) * sh.Dv + e], b.o[(h * sh.N + p) * sh.Dv + e]);
    }
}

} // namespace
