// GPU tests of the backward: dq, dk, dv of the kernels against
// ref::museBackward on the kernel's own partitions (fresh seed, printed;
// MUSE_TEST_SEED replays one), on awkward sizes: N != M, not multiples of any
// tile, GQA 4, D 128, near clusters, orders 0 and 1, dLse given or not. A
// second backward must be bit-identical, and 16-bit specs' o, dq, dk, dv
// delivered in the input dtype must equal the fp32 results rounded. Causal specs (several far-field
// levels, N not a multiple of the block) also check causality: gradients at
// positions >= N/2 ignore dO at positions < N/2, bit for bit. Skipped where
// there is no GPU. MUSE_BWD_TIMING=1 times the causal forward and backward at
// B=16, H=8, N=16k, D=64, bf16 (no reference).
#include "muse/Check/Verify.h"
#include "muse/Runtime/CudaDriver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <iostream>
#include <string>

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
  EXPECT_EQ(r.inputTypeChecked, c.dtype != DType::F32) << r.str();
  EXPECT_EQ(r.inputTypeMismatches, 0) << r.str();
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
                {1, 2, 2, 150, 170}},
        // Order 0 on the tensor cores (backward_keys_mma.cuh): key clusters of
        // more than one 64-key chunk, GQA with near pairs, query clusters that
        // are not a multiple of the 16-cluster tile.
        BwdCase{"bf16_d64_order0_big_clusters", DType::BF16, 64, 64, 1, 10, 4, 0, 0, true,
                {2, 2, 2, 333, 419}},
        BwdCase{"bf16_gqa2_near2_order0", DType::BF16, 64, 64, 2, 12, 8, 0, 2, true,
                {1, 4, 2, 301, 277}},
        BwdCase{"f16_cq20_order0_no_dlse", DType::F16, 64, 64, 1, 20, 6, 0, 0, false,
                {1, 1, 1, 257, 300}},
        // GQA without near field: backward_keys adds the group's heads in
        // acc_dk, acc_dv and emit_dkdv rounds them (one head a group: keys
        // round dk, dv themselves).
        BwdCase{"bf16_gqa2_order0", DType::BF16, 64, 64, 2, 12, 8, 0, 0, true, {1, 4, 2, 301, 277}},
        // The pair sums formed by backward_rows (rowsTiledMma<Cfg, true>):
        // query clusters of two to three 64-member chunks (sums added across
        // chunks, off_ij from the last), 20 key clusters (a partial tile).
        BwdCase{"bf16_order0_fused_pairs_chunks", DType::BF16, 64, 64, 1, 3, 20, 0, 0, true,
                {1, 2, 2, 389, 300}},
        // Order 1 (backward_keys.cuh keysFar1, backward_rows.cuh rowsDipole):
        // key clusters of several 32-key chunks (dqbar added across chunks),
        // query clusters of several member tiles and row chunks, D != Dv.
        BwdCase{"bf16_d64_order1_big_clusters", DType::BF16, 64, 64, 1, 10, 4, 1, 0, true,
                {2, 2, 2, 333, 419}},
        BwdCase{"f32_d128_dv64_order1_big_clusters", DType::F32, 128, 64, 1, 6, 3, 1, 1, true,
                {1, 2, 2, 200, 230}}),
    [](const ::testing::TestParamInfo<BwdCase> &info) { return std::string(info.param.name); });

struct CausalBwdCase {
  const char *name;
  DType dtype;
  int headDim, kvRatio, cq, ck, order, nearClusters, blockSize, windowBlocks;
  bool withDLse;
  Shape shape; // M = N; Hkv filled from kvRatio
};

Spec causalSpec(const CausalBwdCase &c) {
  Spec spec;
  spec.name = c.name;
  spec.causal = true;
  spec.dtype = c.dtype;
  spec.headDim = spec.valueDim = c.headDim;
  spec.kvHeadsRatio = c.kvRatio;
  spec.queryClusters = c.cq;
  spec.keyClusters = c.ck;
  spec.order = c.order;
  spec.nearClusters = c.nearClusters;
  spec.blockSize = c.blockSize;
  spec.windowBlocks = c.windowBlocks;
  return spec;
}

class CausalBackwardVsReference : public ::testing::TestWithParam<CausalBwdCase> {};

TEST_P(CausalBackwardVsReference, MatchesReferenceAndIsCausal) {
  if (!CudaDriver::get().available().ok())
    GTEST_SKIP() << "no GPU: " << CudaDriver::get().available().message;
  const CausalBwdCase &c = GetParam();
  const Spec spec = causalSpec(c);
  check::VerifyOptions opt;
  opt.shape = c.shape;
  opt.shape.Hkv = 0;
  opt.shape.M = c.shape.N;
  const char *seed = std::getenv("MUSE_TEST_SEED");
  opt.seed = seed ? std::strtoull(seed, nullptr, 10) : 0;
  check::BackwardReport r;
  Status st = check::verifyBackward(engine(), spec, opt, c.withDLse, r);
  ASSERT_TRUE(st.ok()) << st.message;
  const double tol = check::referenceTolerance(spec);
  EXPECT_TRUE(r.outputsFinite) << r.str();
  EXPECT_TRUE(r.deterministic) << r.str();
  EXPECT_TRUE(r.causalChecked && r.causal) << r.str();
  EXPECT_EQ(r.inputTypeChecked, c.dtype != DType::F32) << r.str();
  EXPECT_EQ(r.inputTypeMismatches, 0) << r.str();
  EXPECT_LT(r.dqRelL2, tol) << r.str();
  EXPECT_LT(r.dkRelL2, tol) << r.str();
  EXPECT_LT(r.dvRelL2, tol) << r.str();
  std::cout << c.name << ": " << r.str();
}

// Levels: the bit length of ceil(N/S) - w, e.g. 203 / 16 -> 12 -> 4 levels.
INSTANTIATE_TEST_SUITE_P(
    Causal, CausalBackwardVsReference,
    ::testing::Values(
        CausalBwdCase{"causal_f32_order0", DType::F32, 64, 1, 8, 8, 0, 0, 16, 1, true,
                      {1, 2, 2, 203, 203}},
        CausalBwdCase{"causal_f32_order1", DType::F32, 64, 1, 8, 8, 1, 0, 16, 1, true,
                      {1, 2, 2, 203, 203}},
        CausalBwdCase{"causal_f32_order1_w2_no_dlse", DType::F32, 64, 1, 6, 10, 1, 0, 16, 2,
                      false, {2, 1, 1, 250, 250}},
        CausalBwdCase{"causal_f32_near2_order1", DType::F32, 64, 1, 8, 8, 1, 2, 32, 1, true,
                      {1, 2, 2, 300, 300}},
        CausalBwdCase{"causal_f32_near2_order0", DType::F32, 64, 1, 8, 8, 0, 2, 16, 1, true,
                      {1, 1, 1, 181, 181}},
        CausalBwdCase{"causal_f32_gqa4_order1", DType::F32, 64, 4, 8, 8, 1, 1, 16, 1, true,
                      {1, 4, 1, 177, 177}},
        CausalBwdCase{"causal_f32_d128", DType::F32, 128, 1, 8, 8, 1, 0, 16, 1, true,
                      {1, 1, 1, 150, 150}},
        CausalBwdCase{"causal_bf16_order1_near2", DType::BF16, 64, 1, 8, 8, 1, 2, 32, 1, true,
                      {1, 2, 2, 333, 333}},
        CausalBwdCase{"causal_bf16_d128_order0", DType::BF16, 128, 1, 8, 8, 0, 0, 16, 1, true,
                      {2, 1, 1, 170, 170}},
        // The tensor-core window backward with full 64-row tiles, two window
        // blocks, GQA and a partial last tile; and f16 with one 128-key block.
        CausalBwdCase{"causal_bf16_gqa2_s64_w2", DType::BF16, 64, 2, 8, 8, 0, 0, 64, 2, true,
                      {2, 4, 2, 403, 403}},
        CausalBwdCase{"causal_f16_s128_no_dlse", DType::F16, 64, 1, 8, 8, 0, 0, 128, 1, false,
                      {1, 2, 2, 300, 300}},
        // Fused pair sums on served views: 2 query clusters, so served
        // clusters of several 64-member chunks, and 20 key clusters.
        CausalBwdCase{"causal_bf16_order0_fused_pairs_chunks", DType::BF16, 64, 1, 2, 20, 0, 0, 128, 1,
                      true, {1, 2, 2, 611, 611}},
        CausalBwdCase{"causal_bf16_d128_s64_order1", DType::BF16, 128, 1, 8, 8, 1, 0, 64, 1, true,
                      {1, 2, 2, 229, 229}}),
    [](const ::testing::TestParamInfo<CausalBwdCase> &info) {
      return std::string(info.param.name);
    });

/// Device memory owned by a test (freed on scope exit).
struct DeviceMem {
  CUdeviceptr ptr = 0;
  explicit DeviceMem(size_t bytes) { CudaDriver::get().cuMemAlloc(&ptr, bytes); }
  ~DeviceMem() {
    if (ptr)
      CudaDriver::get().cuMemFree(ptr);
  }
  template <class T> T *as() const { return reinterpret_cast<T *>(ptr); }
};

/// Times the causal forward and backward at the shape (B=16, H=8,
/// N=16k, D=64, bf16, specs/causal_d64_order*'s clusters and blocks); only
/// with MUSE_BWD_TIMING=1. Inputs come from a fast xorshift (sum of four
/// uniforms, bf16 by truncation): the CPU reference's Gaussian generator
/// would take minutes at this size, and nothing is compared here.
TEST(CausalBackwardTiming, At16k) {
  CudaDriver &d = CudaDriver::get();
  if (!d.available().ok())
    GTEST_SKIP() << "no GPU: " << d.available().message;
  const char *on = std::getenv("MUSE_BWD_TIMING");
  if (!on || std::string(on) != "1")
    GTEST_SKIP() << "set MUSE_BWD_TIMING=1 to time the causal backward at 16k";
  const Shape sh{16, 8, 8, 16384, 16384};
  const int64_t rows = sh.B * sh.H * sh.N, D = 64;
  std::vector<uint16_t> host(size_t(rows * D));
  uint64_t x = 0x9e3779b97f4a7c15ull;
  auto uniform = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return float(x >> 40) / float(1 << 24) - 0.5f;
  };
  DeviceMem q(host.size() * 2), k(host.size() * 2), v(host.size() * 2);
  for (CUdeviceptr ptr : {q.ptr, k.ptr, v.ptr}) {
    for (uint16_t &e : host) {
      const float g = 1.7f * (uniform() + uniform() + uniform() + uniform());
      uint32_t bits;
      std::memcpy(&bits, &g, 4);
      e = uint16_t(bits >> 16);
    }
    ASSERT_EQ(d.cuMemcpyHtoD(ptr, host.data(), host.size() * 2), CUDA_SUCCESS);
  }
  // dO in bf16 (the spec's dtype), and the o the backward reads (bf16, like a
  // model's; timing only, so a second random draw stands in for the
  // forward's rounded o).
  DeviceMem o(rows * D * 4), oT(host.size() * 2), lse(rows * 4), dO(host.size() * 2),
      dq(rows * D * 4), dk(rows * D * 4), dv(rows * D * 4);
  for (CUdeviceptr ptr : {dO.ptr, oT.ptr}) {
    for (uint16_t &e : host) {
      const float u = uniform();
      uint32_t bits;
      std::memcpy(&bits, &u, 4);
      e = uint16_t(bits >> 16);
    }
    ASSERT_EQ(d.cuMemcpyHtoD(ptr, host.data(), host.size() * 2), CUDA_SUCCESS);
  }
  for (int order : {0, 1}) {
    const Spec spec = causalSpec(CausalBwdCase{"causal_d64_timing", DType::BF16, 64, 1, 64, 64,
                                               order, 0, 512, 1, true, sh});
    Status st;
    auto att = engine().build(spec, st);
    ASSERT_TRUE(att) << st.message;
    const int64_t wsBytes = att->backwardWorkspaceBytes(sh);
    DeviceMem ws{size_t(wsBytes)};
    ASSERT_NE(ws.ptr, 0u) << wsBytes << " bytes of workspace";
    const int64_t S3[3] = {sh.H * sh.N * D, sh.N * D, D};
    ForwardArgs f;
    f.shape = sh;
    f.q = q.as<void>();
    f.k = k.as<void>();
    f.v = v.as<void>();
    f.o = o.as<float>();
    f.lse = lse.as<float>();
    BackwardArgs b;
    b.shape = sh;
    b.q = f.q;
    b.k = f.k;
    b.v = f.v;
    b.o = oT.as<void>();
    b.lse = f.lse;
    b.dO = dO.as<void>();
    b.dq = dq.as<float>();
    b.dk = dk.as<float>();
    b.dv = dv.as<float>();
    for (int i = 0; i < 3; ++i)
      f.qStride[i] = f.kStride[i] = f.vStride[i] = f.oStride[i] = b.qStride[i] = b.kStride[i] =
          b.vStride[i] = b.oStride[i] = b.dOStride[i] = b.dqStride[i] = b.dkStride[i] =
              b.dvStride[i] = S3[i];
    f.workspace = b.workspace = ws.as<void>();
    f.workspaceBytes = b.workspaceBytes = wsBytes;
    auto median = [&](auto call) {
      std::vector<double> ms;
      for (int r = 0; r < 4; ++r) {
        d.cuCtxSynchronize();
        const auto t0 = std::chrono::steady_clock::now();
        EXPECT_TRUE(call().ok());
        d.cuCtxSynchronize();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                         .count());
      }
      std::sort(ms.begin() + 1, ms.end()); // the first call warms up
      return ms[2];
    };
    const double fwdMs = median([&] { return att->forward(f, nullptr); });
    const double bwdMs = median([&] { return att->backward(b, nullptr); });
    ASSERT_EQ(d.cuCtxSynchronize(), CUDA_SUCCESS);
    std::cout << "causal order " << order
              << " B=16 H=8 N=16384 D=64 bf16 S=512 w=1 C=64/64: forward " << fwdMs
              << " ms, backward " << bwdMs << " ms (median of 3 after a warm-up, wall clock)"
              << std::endl;
  }
}

} // namespace
