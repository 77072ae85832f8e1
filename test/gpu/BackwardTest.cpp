// GPU tests of the acausal backward: dq, dk, dv of the kernels against
// ref::museBackward on the kernel's own partitions (fresh seed, printed;
// MUSE_TEST_SEED replays one), on awkward sizes: N != M, not multiples of any
// tile, GQA 4, D 128, near clusters, orders 0 and 1, dLse given or not. A
// second backward must be bit-identical. Skipped where there is no GPU.
#include "muse/Check/Verify.h"
#include "muse/Runtime/CudaDriver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>

using namespace muse;

namespace {

struct BwdCase {
  const char *name;
  DType dtype;
  int headDim, valueDim, kvRatio;
  int cq, ck, order, nearClusters;
  bool withDLse;
  Shape shape; // Hkv filled from kvRatio
};

Engine &engine() {
  static Engine e;
  return e;
}

class BackwardVsReference : public ::testing::TestWithParam<BwdCase> {};

TEST_P(BackwardVsReference, MatchesReferenceOnKernelPartitions) {
  if (!CudaDriver::get().available().ok())
    GTEST_SKIP() << "no GPU: " << CudaDriver::get().available().message;
  const BwdCase &c = GetParam();
  Spec spec;
  spec.name = c.name;
  spec.dtype = c.dtype;
  spec.headDim = c.headDim;
  spec.valueDim = c.valueDim;
  spec.kvHeadsRatio = c.kvRatio;
  spec.queryClusters = c.cq;
  spec.keyClusters = c.ck;
  spec.order = c.order;
  spec.nearClusters = c.nearClusters;
  check::VerifyOptions opt;
  opt.shape = c.shape;
  opt.shape.Hkv = 0;
  const char *seed = std::getenv("MUSE_TEST_SEED");
  opt.seed = seed ? std::strtoull(seed, nullptr, 10) : 0;
  check::BackwardReport r;
  Status st = check::verifyBackward(engine(), spec, opt, c.withDLse, r);
  ASSERT_TRUE(st.ok()) << st.message;
  const double tol = check::referenceTolerance(spec);
  EXPECT_TRUE(r.outputsFinite) << r.str();
  EXPECT_TRUE(r.deterministic) << r.str();
  EXPECT_LT(r.dqRelL2, tol) << r.str();
  EXPECT_LT(r.dkRelL2, tol) << r.str();
  EXPECT_LT(r.dvRelL2, tol) << r.str();
  std::cout << c.name << ": " << r.str();
}

INSTANTIATE_TEST_SUITE_P(
    Acausal, BackwardVsReference,
    ::testing::Values(
        BwdCase{"f32_d64_order0", DType::F32, 64, 64, 1, 16, 16, 0, 0, true, {1, 2, 2, 333, 257}},
        BwdCase{"f32_d64_order1", DType::F32, 64, 64, 1, 16, 16, 1, 0, true, {1, 2, 2, 333, 257}},
        BwdCase{"f32_d64_order1_no_dlse", DType::F32, 64, 64, 1, 8, 12, 1, 0, false,
                {2, 1, 1, 201, 345}},
        BwdCase{"f32_near4_order1", DType::F32, 64, 64, 1, 12, 16, 1, 4, true, {1, 2, 2, 301, 419}},
        BwdCase{"f32_near4_order0", DType::F32, 64, 64, 1, 12, 16, 0, 4, true, {1, 2, 2, 301, 419}},
        BwdCase{"f32_gqa4_order1", DType::F32, 64, 64, 4, 8, 8, 1, 2, true, {1, 4, 1, 190, 230}},
        BwdCase{"f32_d128_dv64", DType::F32, 128, 64, 1, 8, 8, 1, 1, true, {1, 2, 2, 150, 170}},
        BwdCase{"f32_d128", DType::F32, 128, 128, 1, 8, 8, 1, 0, true, {1, 1, 1, 150, 170}},
        BwdCase{"f32_more_clusters_than_points", DType::F32, 64, 64, 1, 64, 64, 1, 2, true,
                {1, 1, 1, 40, 33}},
        BwdCase{"bf16_d64_order1", DType::BF16, 64, 64, 1, 16, 16, 1, 2, true, {1, 2, 2, 333, 257}},
        BwdCase{"f16_gqa4_near4", DType::F16, 64, 64, 4, 8, 8, 1, 4, true, {1, 4, 1, 190, 230}},
        BwdCase{"bf16_d128_order0", DType::BF16, 128, 128, 1, 8, 8, 0, 0, true,
                {1, 2, 2, 150, 170}}),
    [](const ::testing::TestParamInfo<BwdCase> &info) { return std::string(info.param.name); });

} // namespace
