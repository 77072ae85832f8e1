//===- KMeansTest.cpp - The deterministic k-means of ALGORITHM.md §2 ------===//
#include "RefTestUtil.h"

using namespace muse::ref;
using namespace muse::ref::test;

namespace {

TEST(KMeans, OneIterationFromStridedInit) {
  // 1-D points; init c = x_0, x_2, x_4 (j*n/C with n = 6, C = 3).
  std::vector<double> x = {0.0, 1.0, 10.0, 11.0, 20.0, 21.0};
  KMeansResult r;
  ASSERT_TRUE(kmeans(x, 6, 1, 3, 1, r).ok);
  EXPECT_EQ(r.effectiveClusters, 3);
  EXPECT_EQ(r.assign, (std::vector<int32_t>{0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(r.centroids, (std::vector<double>{0.5, 10.5, 20.5}));
  EXPECT_EQ(r.counts, (std::vector<int64_t>{2, 2, 2}));
}

TEST(KMeans, StridedInitUsesFloorOfJTimesNOverC) {
  // n = 7, C = 3: init at x_0, x_2, x_4 (floor(7/3) = 2, floor(14/3) = 4).
  std::vector<double> x = {0, 100, 1, 100, 2, 100, 100};
  KMeansResult r;
  ASSERT_TRUE(kmeans(x, 7, 1, 3, 1, r).ok);
  // 100s are nearest to centroid 2 (x_4 = 2); 0 -> 0, 1 -> 1.
  EXPECT_EQ(r.assign, (std::vector<int32_t>{0, 2, 1, 2, 2, 2, 2}));
  EXPECT_DOUBLE_EQ(r.centroids[2], (2 + 4 * 100.0) / 5);
}

TEST(KMeans, TiesGoToTheLowestIndex) {
  // The point 1.0 is equidistant from 0 and 2.
  std::vector<double> x = {0.0, 1.0, 2.0, 5.0};
  KMeansResult r;
  ASSERT_TRUE(kmeans(x, 4, 1, 2, 1, r).ok); // init x_0 = 0, x_2 = 2
  EXPECT_EQ(r.assign, (std::vector<int32_t>{0, 0, 1, 1}));
}

TEST(KMeans, EmptyClusterKeepsItsCentroid) {
  // Duplicate points: both initial centroids equal, ties send everything to 0.
  std::vector<double> x = {3.0, 3.0, 3.0, 3.0};
  KMeansResult r;
  ASSERT_TRUE(kmeans(x, 4, 1, 2, 3, r).ok);
  EXPECT_EQ(r.assign, (std::vector<int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(r.counts, (std::vector<int64_t>{4, 0}));
  EXPECT_EQ(r.centroids, (std::vector<double>{3.0, 3.0}));
}

TEST(KMeans, MoreClustersThanPointsUsesCeff) {
  std::vector<double> x = {1, 2, 3, 4, 5, 6}; // 3 points of dim 2
  KMeansResult r;
  ASSERT_TRUE(kmeans(x, 3, 2, 5, 2, r).ok);
  EXPECT_EQ(r.effectiveClusters, 3);
  EXPECT_EQ(r.assign, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(r.counts, (std::vector<int64_t>{1, 1, 1, 0, 0}));
  EXPECT_EQ(r.centroids, (std::vector<double>{1, 2, 3, 4, 5, 6, 0, 0, 0, 0}));
}

TEST(KMeans, CentroidsAreMeansOfTheFinalPartition) {
  const int64_t n = 200, dim = 3;
  std::vector<double> x = gaussian(n * dim, 21);
  KMeansResult r;
  ASSERT_TRUE(kmeans(x, n, dim, 7, 4, r).ok);
  std::vector<double> sums(7 * dim, 0.0);
  std::vector<int64_t> counts(7, 0);
  for (int64_t p = 0; p < n; ++p) {
    ++counts[r.assign[p]];
    for (int64_t d = 0; d < dim; ++d)
      sums[r.assign[p] * dim + d] += x[p * dim + d];
  }
  EXPECT_EQ(counts, r.counts);
  for (int j = 0; j < 7; ++j) {
    if (counts[j] == 0)
      continue;
    for (int64_t d = 0; d < dim; ++d)
      EXPECT_NEAR(r.centroids[j * dim + d], sums[j * dim + d] / counts[j], 1e-14);
  }
}

TEST(KMeans, RejectsBadInput) {
  std::vector<double> x = {1, 2, 3, 4};
  KMeansResult r;
  RefStatus st = kmeans(x, 2, 2, 0, 1, r);
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.message.find("clusters >= 1"), std::string::npos) << st.message;
  st = kmeans(x, 2, 2, 2, 0, r);
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.message.find("iters = 0"), std::string::npos) << st.message;
  st = kmeans(x, 3, 2, 2, 1, r);
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.message.find("4 elements but the shape needs 6"), std::string::npos)
      << st.message;
  x[1] = std::nan("");
  st = kmeans(x, 2, 2, 2, 1, r);
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.message.find("points[1]"), std::string::npos) << st.message;
  st = kmeans(x, 0, 2, 2, 1, r);
  EXPECT_FALSE(st.ok);
}

} // namespace
