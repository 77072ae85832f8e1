//===- ErrorsTest.cpp - Bad input gets a message, never a crash -----------===//
#include "RefTestUtil.h"

using namespace muse::ref;
using namespace muse::ref::test;

namespace {

const RefShape kShape{1, 2, 1, 8, 8, 3, 2};

MuseConfig small(bool isCausal = false) {
  MuseConfig c;
  c.causal = isCausal;
  c.queryClusters = 2;
  c.keyClusters = 2;
  c.blockSize = 2;
  return c;
}

void expectError(const RefStatus &st, const std::string &needle) {
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.message.find(needle), std::string::npos)
      << "message: " << st.message << "\nexpected to contain: " << needle;
}

RefStatus forward(const MuseConfig &cfg, const RefShape &sh, const Inputs &in,
                  const Partitions *p = nullptr) {
  MuseForwardResult r;
  return museForward(cfg, sh, in.q, in.k, in.v, p, r);
}

TEST(ReferenceErrors, Shape) {
  Inputs in = randomInputs(kShape, 51);
  RefShape sh = kShape;
  sh.Hkv = 3;
  sh.H = 4;
  expectError(forward(small(), sh, in), "H = 4 is not a multiple of Hkv = 3");
  sh = kShape;
  sh.N = 0;
  expectError(forward(small(), sh, in), "shape.N = 0 is out of range");
  sh = kShape;
  sh.M = 9;
  expectError(forward(small(true), sh, in), "causal attention needs N == M");
  ForwardResult e;
  expectError(exactForward(sh, true, 0.0, in.q, in.k, in.v, e),
              "causal attention needs N == M");
  sh = kShape;
  sh.D = -1;
  expectError(exactForward(sh, false, 0.0, in.q, in.k, in.v, e), "shape.D = -1");
}

TEST(ReferenceErrors, Config) {
  Inputs in = randomInputs(kShape, 52);
  MuseConfig c = small();
  c.queryClusters = 0;
  expectError(forward(c, kShape, in), "query_clusters = 0 is out of range");
  c = small();
  c.keyClusters = -2;
  expectError(forward(c, kShape, in), "key_clusters = -2");
  c = small();
  c.kmeansIters = 0;
  expectError(forward(c, kShape, in), "kmeans_iters = 0");
  c = small();
  c.order = 2;
  expectError(forward(c, kShape, in), "order = 2 is not supported");
  c = small();
  c.nearClusters = 3;
  expectError(forward(c, kShape, in), "near_clusters = 3 is out of range: allowed 0..key_clusters (2)");
  c = small(true);
  c.windowBlocks = 0;
  expectError(forward(c, kShape, in), "window_blocks = 0");
  c = small(true);
  c.blockSize = 0;
  expectError(forward(c, kShape, in), "block_size = 0");
  c = small();
  c.scale = std::nan("");
  expectError(forward(c, kShape, in), "scale is not finite");
}

TEST(ReferenceErrors, Tensors) {
  Inputs in = randomInputs(kShape, 53);
  Inputs bad = in;
  bad.q.pop_back();
  expectError(forward(small(), kShape, bad), "q has 47 elements but the shape needs 48");
  bad = in;
  bad.k[5] = std::numeric_limits<double>::infinity();
  expectError(forward(small(), kShape, bad), "k[5] = inf is not finite");
  bad = in;
  bad.v[2] = std::nan("");
  ForwardResult e;
  expectError(exactForward(kShape, false, 0.0, bad.q, bad.k, bad.v, e), "v[2]");
  Gradients g;
  bad = in;
  bad.dO.resize(3);
  expectError(museBackward(small(), kShape, in.q, in.k, in.v, bad.dO, in.dLse,
                           nullptr, g),
              "dO has 3 elements");
  bad = in;
  bad.dLse.resize(5);
  expectError(exactBackward(kShape, false, 0.0, in.q, in.k, in.v, in.dO, bad.dLse, g),
              "dLse has 5 elements");
  bad = in;
  bad.dLse[0] = std::nan("");
  expectError(museBackward(small(true), kShape, in.q, in.k, in.v, in.dO, bad.dLse,
                           nullptr, g),
              "dLse[0]");
}

TEST(ReferenceErrors, AcausalPartitions) {
  Inputs in = randomInputs(kShape, 54);
  MuseForwardResult r;
  ASSERT_TRUE(museForward(small(), kShape, in.q, in.k, in.v, nullptr, r).ok);
  Partitions p = r.partitions;
  p.query.pop_back();
  expectError(forward(small(), kShape, in, &p), "partitions.query has 15 entries");
  p = r.partitions;
  p.key[3] = 2;
  expectError(forward(small(), kShape, in, &p),
              "partitions.key[head 0][3] = 2 is out of range: allowed 0..1");
  p = r.partitions;
  p.levels = 1;
  expectError(forward(small(), kShape, in, &p), "levels must be 0");
}

TEST(ReferenceErrors, CausalPartitions) {
  Inputs in = randomInputs(kShape, 55);
  MuseConfig c = small(true);
  MuseForwardResult r;
  ASSERT_TRUE(museForward(c, kShape, in.q, in.k, in.v, nullptr, r).ok);
  ASSERT_EQ(r.partitions.levels, 2); // 4 blocks of 2, w = 1: P up to 3
  Partitions p = r.partitions;
  p.levels = 1;
  expectError(forward(c, kShape, in, &p), "partitions.levels = 1 but");
  p = r.partitions;
  p.served.resize(7);
  expectError(forward(c, kShape, in, &p), "partitions.served has 7 entries");
  p = r.partitions;
  p.key[0] = 5; // level 0, segment of block 0
  expectError(forward(c, kShape, in, &p), "partitions.key[level 0][head 0][0] = 5");
  // Every query of the level-0 segment of block 0 in cluster 0: cluster 1 is
  // empty, so no later query may be served by it.
  p = r.partitions;
  p.query[0] = p.query[1] = 0;
  p.served[2] = 1; // position 2 (block 1) is served by that segment
  expectError(forward(c, kShape, in, &p), "must name a non-empty query cluster");
}

} // namespace
