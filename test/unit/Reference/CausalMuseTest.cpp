//===- CausalMuseTest.cpp - ALGORITHM.md §4 invariants, causality, grads --===//
#include "RefTestUtil.h"

#include <cstdlib>
#include <string>

using namespace muse::ref;
using namespace muse::ref::test;

namespace {

MuseConfig causal(int cq, int ck, int order, int S, int w, int nearClusters = 0) {
  MuseConfig c;
  c.causal = true;
  c.queryClusters = cq;
  c.keyClusters = ck;
  c.kmeansIters = 3;
  c.order = order;
  c.nearClusters = nearClusters;
  c.blockSize = S;
  c.windowBlocks = w;
  return c;
}

// 37 positions, S = 4: 10 blocks (the last partial), up to 4 levels at w = 1.
const RefShape kShape{1, 4, 2, 37, 37, 6, 5};

TEST(CausalMuse, LevelCount) {
  EXPECT_EQ(causalLevels(37, 4, 1), 4); // P up to 9
  EXPECT_EQ(causalLevels(37, 4, 2), 4); // P up to 8
  EXPECT_EQ(causalLevels(37, 4, 3), 3); // P up to 7
  EXPECT_EQ(causalLevels(37, 4, 10), 0);
  EXPECT_EQ(causalLevels(1, 4, 1), 0);
}

TEST(CausalMuse, WindowCoveringTheSequenceIsExact) {
  Inputs in = randomInputs(kShape, 41);
  for (int order : {0, 1}) {
    expectExact(causal(2, 2, order, 4, 10), kShape, in);
    expectExact(causal(2, 2, order, 64, 1), kShape, in);
  }
}

TEST(CausalMuse, KeyClustersCoveringTheLargestSegmentIsExact) {
  Inputs in = randomInputs(kShape, 42);
  for (int order : {0, 1})
    for (int w : {1, 2})
      expectExact(causal(3, 32, order, 4, w), kShape, in);
}

TEST(CausalMuse, AllClustersNearIsExact) {
  Inputs in = randomInputs(kShape, 43);
  for (int order : {0, 1})
    expectExact(causal(2, 3, order, 4, 1, 3), kShape, in);
}

TEST(CausalMuse, OutputsIgnoreEveryLaterPositionBitForBit) {
  RefShape sh{1, 2, 1, 45, 45, 4, 3};
  Inputs in = randomInputs(sh, 44);
  for (int order : {0, 1})
    for (int w : {1, 2})
      for (int64_t t : {0, 7, 8, 20, 31, 40}) {
        MuseConfig cfg = causal(3, 3, order, 4, w, order);
        Inputs pert = in;
        for (int64_t h = 0; h < sh.H; ++h)
          for (int64_t p = t + 1; p < sh.N; ++p)
            for (int64_t d = 0; d < sh.D; ++d)
              pert.q[(h * sh.N + p) * sh.D + d] = std::sin(double(p * 7 + d)) * 4;
        for (int64_t p = t + 1; p < sh.N; ++p) {
          for (int64_t d = 0; d < sh.D; ++d)
            pert.k[p * sh.D + d] = std::cos(double(p + 3 * d)) * 5;
          for (int64_t e = 0; e < sh.Dv; ++e)
            pert.v[p * sh.Dv + e] += 10.0;
        }
        MuseForwardResult a, b;
        ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, nullptr, a).ok);
        ASSERT_TRUE(museForward(cfg, sh, pert.q, pert.k, pert.v, nullptr, b).ok);
        bool same = true, changedLater = false;
        for (int64_t h = 0; h < sh.H; ++h)
          for (int64_t p = 0; p < sh.N; ++p) {
            bool eq = a.lse[h * sh.N + p] == b.lse[h * sh.N + p];
            for (int64_t e = 0; e < sh.Dv; ++e)
              eq = eq && a.o[(h * sh.N + p) * sh.Dv + e] ==
                             b.o[(h * sh.N + p) * sh.Dv + e];
            if (p <= t)
              same = same && eq;
            else
              changedLater = changedLater || !eq;
          }
        EXPECT_TRUE(same) << "order " << order << " w " << w << " t " << t;
        EXPECT_TRUE(changedLater) << "the perturbation must reach later outputs";
      }
}

TEST(CausalMuse, PartitionLayout) {
  RefShape sh{1, 2, 1, 37, 37, 3, 2};
  Inputs in = randomInputs(sh, 45);
  MuseConfig cfg = causal(3, 5, 1, 4, 1);
  MuseForwardResult r;
  ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, nullptr, r).ok);
  const Partitions &p = r.partitions;
  ASSERT_EQ(p.levels, 4);
  ASSERT_EQ(p.key.size(), size_t(4 * 1 * 37));
  ASSERT_EQ(p.query.size(), size_t(4 * 2 * 37));
  ASSERT_EQ(p.served.size(), size_t(4 * 2 * 37));
  // Level 3 (8 blocks): the segment of blocks 0..7 serves P = 8, 9, i.e. the
  // queries of blocks 8 and 9 (positions 32..36).
  for (int64_t t = 0; t < 37; ++t) {
    EXPECT_EQ(p.key[3 * 37 + t] >= 0, t < 32) << t;
    EXPECT_EQ(p.served[(3 * 2 + 1) * 37 + t] >= 0, t >= 32) << t; // head 1
  }
  // Level 0 (1 block): segments are even blocks b serving block b + 1 (w = 1).
  for (int64_t t = 0; t < 37; ++t) {
    int64_t block = t / 4;
    EXPECT_EQ(p.key[t] >= 0, block % 2 == 0 && block + 1 < 10) << t;
    EXPECT_EQ(p.served[t] >= 0, block % 2 == 1) << t;
    EXPECT_LT(p.key[t], 4); // C_k^L = min(5, 4)
  }
  MuseForwardResult again;
  ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, &p, again).ok);
  EXPECT_EQ(again.o, r.o);
  EXPECT_EQ(again.lse, r.lse);
}

TEST(CausalMuse, GqaEqualsRepeatedKv) {
  RefShape sh{1, 4, 1, 21, 21, 3, 2};
  Inputs in = randomInputs(sh, 46);
  RefShape mha = sh;
  mha.Hkv = sh.H;
  std::vector<double> k = repeatKv(in.k, sh, sh.D), v = repeatKv(in.v, sh, sh.Dv);
  MuseConfig cfg = causal(2, 3, 1, 3, 1, 1);
  MuseForwardResult a, b;
  ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, nullptr, a).ok);
  ASSERT_TRUE(museForward(cfg, mha, in.q, k, v, nullptr, b).ok);
  EXPECT_EQ(a.o, b.o);
  EXPECT_EQ(a.lse, b.lse);
}

struct GradCase {
  const char *name;
  RefShape sh;
  int cq, ck, order, S, w, nearClusters;
};

// Names the case in failure messages instead of dumping its bytes.
void PrintTo(const GradCase &c, std::ostream *os) { *os << c.name; }

class CausalMuseGradient : public ::testing::TestWithParam<GradCase> {};

TEST_P(CausalMuseGradient, MatchesFiniteDifferences) {
  const GradCase &c = GetParam();
  Inputs in = randomInputs(c.sh, 47);
  MuseConfig cfg = causal(c.cq, c.ck, c.order, c.S, c.w, c.nearClusters);
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
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CausalMuseGradient,
    ::testing::Values(
        // 19 positions, S = 3: 7 blocks, the last partial; 3 levels at w = 1.
        GradCase{"monopole", {1, 1, 1, 19, 19, 3, 2}, 2, 2, 0, 3, 1, 0},
        GradCase{"dipole", {1, 1, 1, 19, 19, 3, 2}, 2, 2, 1, 3, 1, 0},
        GradCase{"dipoleNearWindow2", {1, 2, 1, 19, 19, 3, 3}, 2, 3, 1, 3, 2, 1},
        GradCase{"singlePosition", {1, 1, 1, 1, 1, 3, 2}, 2, 2, 1, 4, 1, 0},
        GradCase{"moreClustersThanPoints", {1, 1, 1, 14, 14, 2, 2}, 9, 9, 1, 2, 1, 1},
        GradCase{"gqaRatio4", {1, 4, 1, 13, 13, 2, 2}, 2, 2, 1, 2, 1, 0}),
    [](const auto &info) { return std::string(info.param.name); });

} // namespace

// The reference runs heads (and exact rows) on several threads; the thread
// count must not change a single bit of any output (MUSE_REF_THREADS).
TEST(ReferenceThreads, ThreadCountDoesNotChangeResults) {
  const RefShape sh{2, 4, 2, 53, 53, 6, 5};
  const Inputs in = randomInputs(sh, 91);
  const char *before = std::getenv("MUSE_REF_THREADS");
  const std::string saved = before ? before : "";
  auto run = [&](const char *threads, bool causalCfg, MuseForwardResult &r, ForwardResult &e) {
    setenv("MUSE_REF_THREADS", threads, 1);
    MuseConfig cfg = causalCfg ? causal(3, 4, 1, 4, 1, 1) : MuseConfig{};
    if (!causalCfg) {
      cfg.queryClusters = 5;
      cfg.keyClusters = 4;
      cfg.order = 1;
      cfg.nearClusters = 1;
    }
    ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, nullptr, r).ok);
    ASSERT_TRUE(exactForward(sh, causalCfg, 0.0, in.q, in.k, in.v, e).ok);
  };
  for (bool causalCfg : {false, true}) {
    MuseForwardResult one, many;
    ForwardResult exactOne, exactMany;
    run("1", causalCfg, one, exactOne);
    run("7", causalCfg, many, exactMany);
    EXPECT_EQ(one.o, many.o);
    EXPECT_EQ(one.lse, many.lse);
    EXPECT_EQ(one.partitions.query, many.partitions.query);
    EXPECT_EQ(one.partitions.key, many.partitions.key);
    EXPECT_EQ(exactOne.o, exactMany.o);
    EXPECT_EQ(exactOne.lse, exactMany.lse);
  }
  if (before)
    setenv("MUSE_REF_THREADS", saved.c_str(), 1);
  else
    unsetenv("MUSE_REF_THREADS");
}
