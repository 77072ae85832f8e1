// GPU tests of the causal forward (ALGORITHM.md §4): the window, every
// far-field level and the merge against the CPU reference on the kernel's own
// per-level partitions, on awkward lengths (not a multiple of S, N < S, N = 1),
// several (S, w), GQA, D 128, every dtype; and causality: redrawing every input
// after position t leaves every output at or before t bit for bit unchanged.
// Skipped where there is no GPU. MUSE_TEST_SEED replays a seed.
#include "muse/Check/Verify.h"
#include "muse/Runtime/CudaDriver.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

using namespace muse;

namespace {

struct CausalCase {
  const char *name;
  DType dtype;
  int headDim, kvRatio;
  int cq, ck, iters, order, nearClusters;
  int blockSize, windowBlocks;
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

Spec specOf(const CausalCase &c) {
  Spec s;
  s.name = c.name;
  s.causal = true;
  s.dtype = c.dtype;
  s.headDim = c.headDim;
  s.valueDim = c.headDim;
  s.kvHeadsRatio = c.kvRatio;
  s.queryClusters = c.cq;
  s.keyClusters = c.ck;
  s.kmeansIters = c.iters;
  s.order = c.order;
  s.nearClusters = c.nearClusters;
  s.blockSize = c.blockSize;
  s.windowBlocks = c.windowBlocks;
  return s;
}

class CausalVsReference : public ::testing::TestWithParam<CausalCase> {};

TEST_P(CausalVsReference, MatchesReferenceOnKernelPartitions) {
  if (!CudaDriver::get().available().ok())
    GTEST_SKIP() << "no GPU: " << CudaDriver::get().available().message;
  const CausalCase &c = GetParam();
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
  EXPECT_NEAR(report.relSqErrVsExact, report.referenceRelSqErrVsExact,
              0.05 * report.referenceRelSqErrVsExact + 1e-6);
  std::printf("%s: %s", c.name, report.str().c_str());
}

const CausalCase kCases[] = {
    // name, dtype, D, ratio, CQ, CK, T, order, E, S, w, {B, H, Hkv, N, M}
    {"f32_o1_S64_w1", DType::F32, 64, 1, 16, 16, 3, 1, 0, 64, 1, {2, 3, 0, 1000, 1000}},
    {"f32_o0_S32_w2", DType::F32, 64, 1, 16, 8, 2, 0, 0, 32, 2, {1, 2, 0, 777, 777}},
    {"f32_o1_S16_cq64", DType::F32, 64, 1, 64, 64, 3, 1, 0, 16, 1, {1, 2, 0, 301, 301}},
    {"f32_o0_near2_S32_w3", DType::F32, 64, 1, 8, 8, 3, 0, 2, 32, 3, {1, 2, 0, 517, 517}},
    {"f32_o1_N_below_S", DType::F32, 64, 1, 16, 16, 3, 1, 0, 64, 1, {1, 2, 0, 50, 50}},
    {"f32_o1_N1", DType::F32, 64, 1, 16, 16, 3, 1, 0, 64, 1, {2, 2, 0, 1, 1}},
    {"f32_o1_gqa2_d128", DType::F32, 128, 2, 16, 16, 2, 1, 0, 32, 2, {1, 4, 0, 450, 450}},
    {"bf16_o1_S64_w1", DType::BF16, 64, 1, 32, 32, 3, 1, 0, 64, 1, {2, 2, 0, 1200, 1200}},
    {"bf16_o0_d128_S64_w2", DType::BF16, 128, 1, 16, 16, 3, 0, 0, 64, 2, {1, 2, 0, 600, 600}},
    {"f16_o1_gqa4_S32_w1", DType::F16, 64, 4, 16, 16, 3, 1, 0, 32, 1, {1, 4, 0, 700, 700}},
};

INSTANTIATE_TEST_SUITE_P(Causal, CausalVsReference, ::testing::ValuesIn(kCases),
                         [](const auto &info) { return std::string(info.param.name); });

struct CausalityCase {
  const char *name;
  DType dtype;
  int order, blockSize, windowBlocks;
  int64_t N, cut;
};

class CausalityOnGpu : public ::testing::TestWithParam<CausalityCase> {};

TEST_P(CausalityOnGpu, LaterInputsDoNotMoveEarlierOutputs) {
  if (!CudaDriver::get().available().ok())
    GTEST_SKIP() << "no GPU: " << CudaDriver::get().available().message;
  const CausalityCase &c = GetParam();
  CausalCase base{c.name, c.dtype, 64, 2, 16, 16, 3, c.order, 0, c.blockSize, c.windowBlocks, {}};
  Spec spec = specOf(base);
  check::CausalityReport report;
  Status st = check::verifyCausality(engine(), spec, {2, 4, 0, c.N, c.N}, seedFromEnv(), c.cut, report);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_TRUE(report.outputsFinite);
  EXPECT_EQ(report.changedAtOrBefore, 0) << "outputs at positions <= " << c.cut << " moved";
  if (c.cut + 1 < c.N)
    EXPECT_GT(report.changedAfter, 0) << "the redrawn inputs changed nothing: the check is void";
}

const CausalityCase kCausality[] = {
    {"f32_mid_block", DType::F32, 1, 32, 1, 1000, 333},
    {"f32_block_end", DType::F32, 0, 32, 2, 1000, 511},
    {"bf16_first", DType::BF16, 1, 64, 1, 900, 0},
    {"bf16_late", DType::BF16, 1, 16, 1, 1100, 1000},
};

INSTANTIATE_TEST_SUITE_P(Causal, CausalityOnGpu, ::testing::ValuesIn(kCausality),
                         [](const auto &info) { return std::string(info.param.name); });

// One timing of the whole causal pipeline (not a check): only with
// MUSE_CAUSAL_TIMING=1, on N = 16k, B = 16, H = 8, D = 64, bf16.
TEST(CausalTiming, Pipeline16k) {
  if (!std::getenv("MUSE_CAUSAL_TIMING"))
    GTEST_SKIP() << "set MUSE_CAUSAL_TIMING=1 to time the causal pipeline";
  if (!CudaDriver::get().available().ok())
    GTEST_SKIP() << "no GPU: " << CudaDriver::get().available().message;
  for (int order : {0, 1}) {
    CausalCase c{"timing", DType::BF16, 64, 1, 64, 64, 3, order, 0, 512, 1, {}};
    Spec spec = specOf(c);
    check::VerifyOptions opt;
    opt.shape = {16, 8, 8, 16384, 16384};
    opt.timeOnly = true;
    opt.timedRuns = 5;
    opt.seed = 1;
    check::VerifyReport report;
    Status st = check::verifyForward(engine(), spec, opt, report);
    ASSERT_TRUE(st.ok()) << st.message;
    EXPECT_TRUE(report.outputsFinite);
    std::printf("causal order %d S=512 w=1 C=64 T=3, B=16 H=8 N=16384 D=64 bf16: %.3f ms\n", order,
                report.medianMs);
  }
}

} // namespace
