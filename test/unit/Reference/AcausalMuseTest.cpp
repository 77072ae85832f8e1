//===- AcausalMuseTest.cpp - ALGORITHM.md §3 invariants and gradients -----===//
#include "RefTestUtil.h"

using namespace muse::ref;
using namespace muse::ref::test;

namespace {

MuseConfig acausal(int cq, int ck, int order, int nearClusters = 0) {
  MuseConfig c;
  c.queryClusters = cq;
  c.keyClusters = ck;
  c.kmeansIters = 3;
  c.order = order;
  c.nearClusters = nearClusters;
  return c;
}

const RefShape kShape{2, 4, 2, 24, 30, 8, 6};

TEST(AcausalMuse, EveryQueryAloneIsExact) {
  Inputs in = randomInputs(kShape, 31);
  for (int order : {0, 1})
    expectExact(acausal(kShape.N, 5, order), kShape, in);
}

TEST(AcausalMuse, EveryKeyAloneIsExact) {
  Inputs in = randomInputs(kShape, 32);
  for (int order : {0, 1})
    expectExact(acausal(3, kShape.M, order), kShape, in);
}

TEST(AcausalMuse, AllClustersNearIsExact) {
  Inputs in = randomInputs(kShape, 33);
  for (int order : {0, 1})
    expectExact(acausal(4, 6, order, 6), kShape, in);
}

TEST(AcausalMuse, OneClusterEachIsTheCentroidsAttention) {
  // C_q = C_k = 1, monopole: every query gets the centroid's exact output.
  RefShape sh{1, 1, 1, 5, 9, 3, 2};
  Inputs in = randomInputs(sh, 34);
  MuseForwardResult m;
  ASSERT_TRUE(museForward(acausal(1, 1, 0), sh, in.q, in.k, in.v, nullptr, m).ok);
  std::vector<double> qbar(sh.D, 0.0);
  for (int64_t n = 0; n < sh.N; ++n)
    for (int64_t d = 0; d < sh.D; ++d)
      qbar[d] += in.q[n * sh.D + d] / sh.N;
  ForwardResult e;
  RefShape one = sh;
  one.N = 1;
  ASSERT_TRUE(exactForward(one, false, 0.0, qbar, in.k, in.v, e).ok);
  for (int64_t n = 0; n < sh.N; ++n)
    for (int64_t c = 0; c < sh.Dv; ++c)
      EXPECT_NEAR(m.o[n * sh.Dv + c], e.o[c], 1e-14);
  EXPECT_NEAR(m.queryCentroids[0], qbar[0] / std::sqrt(3.0), 1e-15);
  EXPECT_EQ(m.queryCounts[0], sh.N);
}

TEST(AcausalMuse, TranslatingKeysLeavesOutputUnchanged) {
  Inputs in = randomInputs(kShape, 35);
  std::vector<double> shifted = in.k;
  for (size_t i = 0; i < shifted.size(); ++i)
    shifted[i] += 0.25 * double(i % kShape.D) - 0.8;
  for (int order : {0, 1})
    for (int nearClusters : {0, 2}) {
      MuseConfig cfg = acausal(4, 5, order, nearClusters);
      MuseForwardResult a, b;
      ASSERT_TRUE(museForward(cfg, kShape, in.q, in.k, in.v, nullptr, a).ok);
      ASSERT_TRUE(museForward(cfg, kShape, in.q, shifted, in.v, nullptr, b).ok);
      EXPECT_EQ(a.partitions.key, b.partitions.key);
      EXPECT_LT(maxError(b.o, a.o), 1e-12);
    }
}

TEST(AcausalMuse, GivenPartitionsReproduceTheForward) {
  Inputs in = randomInputs(kShape, 36);
  MuseConfig cfg = acausal(4, 5, 1, 1);
  MuseForwardResult a, b;
  ASSERT_TRUE(museForward(cfg, kShape, in.q, in.k, in.v, nullptr, a).ok);
  EXPECT_EQ(a.partitions.query.size(), size_t(kShape.B * kShape.H * kShape.N));
  EXPECT_EQ(a.partitions.key.size(), size_t(kShape.B * kShape.Hkv * kShape.M));
  ASSERT_TRUE(museForward(cfg, kShape, in.q, in.k, in.v, &a.partitions, b).ok);
  EXPECT_EQ(a.o, b.o);
  EXPECT_EQ(a.lse, b.lse);
  EXPECT_EQ(a.queryCentroids, b.queryCentroids);
  // The centroids of k-means equal the means of the final partition.
  KMeansResult km;
  const double s = 1 / std::sqrt(double(kShape.D));
  std::vector<double> x(in.q.begin(), in.q.begin() + kShape.N * kShape.D);
  for (double &e : x)
    e *= s;
  ASSERT_TRUE(kmeans(x, kShape.N, kShape.D, 4, 3, km).ok);
  for (int i = 0; i < 4; ++i) {
    if (km.counts[i] == 0)
      continue;
    for (int64_t d = 0; d < kShape.D; ++d)
      EXPECT_NEAR(a.queryCentroids[i * kShape.D + d], km.centroids[i * kShape.D + d],
                  1e-14);
  }
}

TEST(AcausalMuse, GqaEqualsRepeatedKv) {
  RefShape sh{1, 8, 2, 10, 12, 4, 3};
  Inputs in = randomInputs(sh, 37);
  RefShape mha = sh;
  mha.Hkv = sh.H;
  std::vector<double> k = repeatKv(in.k, sh, sh.D), v = repeatKv(in.v, sh, sh.Dv);
  MuseConfig cfg = acausal(3, 4, 1, 1);
  MuseForwardResult a, b;
  ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, nullptr, a).ok);
  ASSERT_TRUE(museForward(cfg, mha, in.q, k, v, nullptr, b).ok);
  EXPECT_EQ(a.o, b.o);
  EXPECT_EQ(a.lse, b.lse);
  Gradients ga, gb;
  ASSERT_TRUE(museBackward(cfg, sh, in.q, in.k, in.v, in.dO, in.dLse, nullptr, ga).ok);
  ASSERT_TRUE(museBackward(cfg, mha, in.q, k, v, in.dO, in.dLse, nullptr, gb).ok);
  EXPECT_LT(maxError(ga.dq, gb.dq), 1e-14);
  // dk of a kv head = sum of the dk of its repeats.
  std::vector<double> dkSum(in.k.size(), 0.0);
  for (int64_t h = 0; h < sh.H; ++h)
    for (int64_t i = 0; i < sh.M * sh.D; ++i)
      dkSum[(h / 4) * sh.M * sh.D + i] += gb.dk[h * sh.M * sh.D + i];
  EXPECT_LT(maxError(ga.dk, dkSum), 1e-13);
}

struct GradCase {
  const char *name;
  RefShape sh;
  int cq, ck, order, nearClusters;
  bool withLse;
};

// Names the case in failure messages instead of dumping its bytes.
void PrintTo(const GradCase &c, std::ostream *os) { *os << c.name; }

class AcausalMuseGradient : public ::testing::TestWithParam<GradCase> {};

TEST_P(AcausalMuseGradient, MatchesFiniteDifferences) {
  const GradCase &c = GetParam();
  Inputs in = randomInputs(c.sh, 38);
  if (!c.withLse)
    in.dLse.clear();
  MuseConfig cfg = acausal(c.cq, c.ck, c.order, c.nearClusters);
  MuseForwardResult base;
  ASSERT_TRUE(museForward(cfg, c.sh, in.q, in.k, in.v, nullptr, base).ok);
  Gradients g;
  ASSERT_TRUE(museBackward(cfg, c.sh, in.q, in.k, in.v, in.dO, in.dLse,
                           &base.partitions, g)
                  .ok);
  Gradients fd = finiteDifferences(
      [&](const std::vector<double> &q, const std::vector<double> &k,
          const std::vector<double> &v, std::vector<double> &o,
          std::vector<double> &lse) {
        MuseForwardResult r;
        ASSERT_TRUE(museForward(cfg, c.sh, q, k, v, &base.partitions, r).ok);
        o = r.o;
        lse = r.lse;
      },
      in);
  expectGradientsMatch(g, fd);
  // Without partitions the backward runs the forward's k-means itself.
  Gradients g2;
  ASSERT_TRUE(
      museBackward(cfg, c.sh, in.q, in.k, in.v, in.dO, in.dLse, nullptr, g2).ok);
  EXPECT_EQ(g.dq, g2.dq);
  EXPECT_EQ(g.dk, g2.dk);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, AcausalMuseGradient,
    ::testing::Values(
        GradCase{"monopole", {1, 2, 1, 9, 11, 4, 3}, 3, 4, 0, 0, true},
        GradCase{"dipole", {1, 2, 1, 9, 11, 4, 3}, 3, 4, 1, 0, true},
        GradCase{"dipoleNear", {1, 2, 2, 8, 10, 3, 4}, 2, 4, 1, 2, true},
        GradCase{"monopoleNearNoLse", {1, 1, 1, 8, 10, 3, 2}, 3, 3, 0, 1, false},
        GradCase{"singleQuery", {1, 1, 1, 1, 6, 3, 2}, 2, 3, 1, 0, true},
        GradCase{"moreClustersThanPoints", {1, 1, 1, 3, 4, 3, 2}, 7, 9, 1, 1, true},
        GradCase{"gqaRatio4", {1, 4, 1, 6, 9, 3, 3}, 2, 3, 1, 1, true},
        GradCase{"valueDimDiffers", {2, 1, 1, 7, 5, 2, 5}, 2, 2, 1, 0, true}),
    [](const auto &info) { return std::string(info.param.name); });

TEST(AcausalMuse, EmptyClustersInAGivenPartition) {
  // Clusters 1 and 3 of the queries and 0 of the keys have no members.
  RefShape sh{1, 1, 1, 6, 7, 3, 2};
  Inputs in = randomInputs(sh, 39);
  Partitions p;
  p.query = {0, 2, 2, 0, 4, 4};
  p.key = {1, 2, 1, 2, 2, 1, 3};
  for (int order : {0, 1}) {
    MuseConfig cfg = acausal(5, 4, order, 1);
    MuseForwardResult r;
    ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, &p, r).ok);
    EXPECT_EQ(r.queryCounts, (std::vector<int64_t>{2, 0, 2, 0, 2}));
    for (int64_t d = 0; d < sh.D; ++d)
      EXPECT_EQ(r.queryCentroids[1 * sh.D + d], 0.0);
    Gradients g;
    ASSERT_TRUE(museBackward(cfg, sh, in.q, in.k, in.v, in.dO, in.dLse, &p, g).ok);
    Gradients fd = finiteDifferences(
        [&](const std::vector<double> &q, const std::vector<double> &k,
            const std::vector<double> &v, std::vector<double> &o,
            std::vector<double> &lse) {
          MuseForwardResult f;
          ASSERT_TRUE(museForward(cfg, sh, q, k, v, &p, f).ok);
          o = f.o;
          lse = f.lse;
        },
        in);
    expectGradientsMatch(g, fd);
  }
}

} // namespace
