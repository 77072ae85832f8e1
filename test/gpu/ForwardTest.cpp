// GPU tests of the acausal forward: every kernel against the CPU reference on
// the kernel's own partitions, on fresh random inputs of awkward sizes (the
// seed is printed so that a failure can be replayed with MUSE_TEST_SEED).
// Skipped where there is no GPU.
#include "muse/Check/Verify.h"
#include "muse/Runtime/CudaDriver.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

using namespace muse;

namespace {

struct Case {
  const char *name;
  DType dtype;
  int headDim, valueDim, kvRatio;
  int cq, ck, iters, order, nearClusters;
  Shape shape; // Hkv filled from kvRatio
};

Engine &engine() {
  static Engine e;
  return e;
}

uint64_t seedFromEnv() {
  const char *s = std::getenv("MUSE_TEST_SEED");
  return s ? std::strtoull(s, nullptr, 10) : 0;
}

Spec specOf(const Case &c) {
  Spec s;
  s.name = c.name;
  s.dtype = c.dtype;
  s.headDim = c.headDim;
  s.valueDim = c.valueDim;
  s.kvHeadsRatio = c.kvRatio;
  s.queryClusters = c.cq;
  s.keyClusters = c.ck;
  s.kmeansIters = c.iters;
  s.order = c.order;
  s.nearClusters = c.nearClusters;
  return s;
}

class ForwardVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(ForwardVsReference, MatchesReferenceOnKernelPartitions) {
  if (!CudaDriver::get().available().ok())
    GTEST_SKIP() << "no GPU: " << CudaDriver::get().available().message;
  const Case &c = GetParam();
  Spec spec = specOf(c);
  check::VerifyOptions opt;
  opt.shape = c.shape;
  opt.shape.Hkv = 0;
  opt.seed = seedFromEnv();
  check::VerifyReport report;
  Status st = check::verifyForward(engine(), spec, opt, report);
  ASSERT_TRUE(st.ok()) << st.message;
  SCOPED_TRACE(report.str());
  EXPECT_TRUE(report.outputsFinite);
  EXPECT_LT(report.relL2VsReference, check::referenceTolerance(spec));
  EXPECT_LT(report.lseMaxAbsVsReference, spec.dtype == DType::F32 ? 1e-4 : 1e-2);
  // The kernel's approximation error must be the reference's, not larger.
  EXPECT_NEAR(report.relSqErrVsExact, report.referenceRelSqErrVsExact,
              0.05 * report.referenceRelSqErrVsExact + 1e-6);
  std::printf("%s: %s", c.name, report.str().c_str());
}

// Awkward sizes: nothing a multiple of a tile, N != M, N = 1, more clusters
// than points, GQA, every dtype, both head dims, both orders, near field.
const Case kCases[] = {
    {"bf16_d64_o1", DType::BF16, 64, 64, 1, 64, 64, 3, 1, 0, {2, 3, 0, 1000, 777}},
    {"bf16_d64_o0", DType::BF16, 64, 64, 1, 64, 64, 3, 0, 0, {1, 2, 0, 1531, 1531}},
    {"f32_d64_o1", DType::F32, 64, 64, 1, 32, 48, 2, 1, 0, {1, 2, 0, 613, 901}},
    {"f32_d64_o0_near4", DType::F32, 64, 64, 1, 16, 24, 3, 0, 4, {1, 2, 0, 517, 1203}},
    {"f16_d64_gqa4_o1", DType::F16, 64, 64, 4, 24, 40, 3, 1, 0, {2, 8, 0, 700, 555}},
    {"bf16_d128_o1_near4", DType::BF16, 128, 128, 1, 64, 64, 3, 1, 4, {1, 2, 0, 1100, 999}},
    {"f32_d128_dv64_o1", DType::F32, 128, 64, 2, 20, 30, 1, 1, 2, {1, 4, 0, 333, 444}},
    {"f32_d64_dv128_o0", DType::F32, 64, 128, 1, 8, 8, 4, 0, 0, {2, 1, 0, 129, 65}},
    {"f32_n1_more_clusters", DType::F32, 64, 64, 1, 64, 64, 3, 1, 0, {1, 2, 0, 1, 37}},
    {"bf16_cq1024_ck512", DType::BF16, 64, 64, 1, 1024, 512, 2, 1, 8, {1, 1, 0, 3000, 2500}},
    {"f32_near_all", DType::F32, 64, 64, 1, 16, 16, 3, 1, 16, {1, 2, 0, 300, 300}},
};

INSTANTIATE_TEST_SUITE_P(Gpu, ForwardVsReference, ::testing::ValuesIn(kCases),
                         [](const auto &info) { return std::string(info.param.name); });

// With k-means on well-separated data there are no near ties: the GPU
// partitions must equal the reference's exactly.
TEST(GpuPartitions, EqualReferenceOnWellSeparatedData) {
  if (!CudaDriver::get().available().ok())
    GTEST_SKIP() << "no GPU: " << CudaDriver::get().available().message;
  for (DType t : {DType::F32, DType::BF16}) {
    Spec spec;
    spec.name = "partitions";
    spec.dtype = t;
    spec.queryClusters = 16;
    spec.keyClusters = 32;
    check::VerifyOptions opt;
    opt.shape = {2, 4, 0, 1111, 977};
    opt.seed = seedFromEnv();
    opt.inputs = check::InputKind::WellSeparated;
    opt.comparePartitions = true;
    check::VerifyReport report;
    Status st = check::verifyForward(engine(), spec, opt, report);
    ASSERT_TRUE(st.ok()) << st.message;
    SCOPED_TRACE(report.str());
    EXPECT_EQ(report.queryAssignMismatches, 0);
    EXPECT_EQ(report.keyAssignMismatches, 0);
    EXPECT_LT(report.relL2VsReference, check::referenceTolerance(spec));
  }
}

// near_clusters = key_clusters is exact attention, on the GPU too.
TEST(GpuExactness, AllNearClustersIsExactAttention) {
  if (!CudaDriver::get().available().ok())
    GTEST_SKIP() << "no GPU: " << CudaDriver::get().available().message;
  Spec spec;
  spec.name = "exact";
  spec.dtype = DType::F32;
  spec.queryClusters = 8;
  spec.keyClusters = 8;
  spec.nearClusters = 8;
  check::VerifyOptions opt;
  opt.shape = {1, 2, 0, 257, 391};
  opt.seed = seedFromEnv();
  check::VerifyReport report;
  Status st = check::verifyForward(engine(), spec, opt, report);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_LT(report.relSqErrVsExact, 1e-10) << report.str();
}

} // namespace
