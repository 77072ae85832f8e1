//===- ParamsTest.cpp - Forward argument checks and MuseParams, on the CPU ===//

#include "muse/Runtime/Params.h"
#include "muse/params.cuh"

#include <gtest/gtest.h>

namespace muse {
namespace {

LaunchPlan smallPlan() {
  LaunchPlan plan;
  plan.buffers.push_back({"q_assign", Sym::QHeads, 1, 0, 0, 4});
  plan.buffers.push_back({"k_assign", Sym::KHeads, 0, 1, 0, 4});
  plan.buffers.push_back({"row_lse", Sym::QHeads, 1, 0, 0, 4});
  KernelLaunch l;
  l.kernel = "muse_kmeans_assign_q";
  l.grid[0] = {Sym::N, 256, 1};
  l.grid[1] = {Sym::QHeads, 1, 1};
  l.block = 256;
  plan.launches.push_back(l);
  return plan;
}

/// A valid call: contiguous [B, H, N, D] tensors, GQA ratio 2.
struct Call {
  Spec spec;
  LaunchPlan plan = smallPlan();
  ForwardArgs args;
  alignas(256) char workspace[1 << 16];
  Call() {
    spec.kvHeadsRatio = 2;
    args.shape = {2, 4, 2, 100, 120};
    const Shape &s = args.shape;
    int64_t D = spec.headDim, Dv = spec.valueDim;
    auto fake = [](uintptr_t v) { return reinterpret_cast<void *>(v); };
    args.q = fake(0x10000);
    args.k = fake(0x20000);
    args.v = fake(0x30000);
    args.o = static_cast<float *>(fake(0x40000));
    int64_t qs[3] = {s.H * s.N * D, s.N * D, D}, ks[3] = {s.Hkv * s.M * D, s.M * D, D},
            vs[3] = {s.Hkv * s.M * Dv, s.M * Dv, Dv}, os[3] = {s.H * s.N * Dv, s.N * Dv, Dv};
    std::copy(qs, qs + 3, args.qStride);
    std::copy(ks, ks + 3, args.kStride);
    std::copy(vs, vs + 3, args.vStride);
    std::copy(os, os + 3, args.oStride);
    args.workspace = workspace;
    args.workspaceBytes = sizeof(workspace);
  }
  Status check() const { return checkForwardArgs(spec, plan, args); }
};

void expectInvalid(const Call &c, const std::string &needle) {
  Status s = c.check();
  EXPECT_EQ(s.code, StatusCode::InvalidArgument) << needle;
  EXPECT_NE(s.message.find(needle), std::string::npos) << s.message;
}

TEST(Params, ValidCallFillsEveryField) {
  Call c;
  ASSERT_TRUE(c.check().ok()) << c.check().message;
  MuseParams p;
  ASSERT_TRUE(fillParams(c.spec, c.plan, c.args, p).ok());
  EXPECT_EQ(p.q, c.args.q);
  EXPECT_EQ(p.o, c.args.o);
  EXPECT_EQ(p.lse, nullptr);
  EXPECT_EQ(p.q_sh, 100 * 64);
  EXPECT_EQ(p.k_sb, 2 * 120 * 64);
  EXPECT_EQ(p.v_sm, 64);
  EXPECT_EQ(p.o_sn, 64);
  EXPECT_EQ(p.B, 2);
  EXPECT_EQ(p.H, 4);
  EXPECT_EQ(p.Hkv, 2);
  EXPECT_EQ(p.N, 100);
  EXPECT_EQ(p.M, 120);
  EXPECT_FLOAT_EQ(p.scale, 0.125f);
  std::vector<int64_t> off = c.plan.bufferOffsets(c.args.shape);
  EXPECT_EQ(reinterpret_cast<char *>(p.q_assign), c.workspace + off[0]);
  EXPECT_EQ(reinterpret_cast<char *>(p.k_assign), c.workspace + off[1]);
  EXPECT_EQ(reinterpret_cast<char *>(p.row_lse), c.workspace + off[2]);
  EXPECT_EQ(p.summaries, nullptr); // not in this plan
}

TEST(Params, ExplicitScale) {
  Call c;
  c.spec.scale = 0.5;
  MuseParams p;
  ASSERT_TRUE(fillParams(c.spec, c.plan, c.args, p).ok());
  EXPECT_FLOAT_EQ(p.scale, 0.5f);
}

TEST(Params, BadShapes) {
  { Call c; c.args.shape.N = 0; expectInvalid(c, "must be >= 1"); }
  { Call c; c.args.shape.H = 3; expectInvalid(c, "H must be a multiple of Hkv"); }
  { Call c; c.args.shape.H = 8; expectInvalid(c, "kv_heads_ratio 2"); }
  { Call c; c.args.shape.B = 20000; expectInvalid(c, "exceeds 65535"); }
  { Call c; c.args.shape.M = int64_t(1) << 32; expectInvalid(c, "at most"); }
}

TEST(Params, BadPointersAndStrides) {
  { Call c; c.args.v = nullptr; expectInvalid(c, "null pointer for v"); }
  { Call c; c.args.o = nullptr; expectInvalid(c, "null pointer for o"); }
  { Call c; c.args.kStride[1] = -1; expectInvalid(c, "k stride 1"); }
  { Call c; c.args.oStride[2] = 32; expectInvalid(c, "would overlap"); }
}

TEST(Params, Workspace) {
  { Call c; c.args.workspace = nullptr; expectInvalid(c, "workspace is null"); }
  {
    Call c;
    c.args.workspaceBytes = c.plan.workspaceBytes(c.args.shape) - 1;
    expectInvalid(c, "needs " + std::to_string(c.plan.workspaceBytes(c.args.shape)));
  }
  { Call c; c.args.workspace = c.workspace + 16; expectInvalid(c, "256-byte aligned"); }
  {
    Call c;
    c.args.workspaceBytes = c.plan.workspaceBytes(c.args.shape);
    EXPECT_TRUE(c.check().ok());
  }
}

TEST(Params, PartitionsNeedTheirBuffers) {
  Call c;
  int32_t out[1];
  c.args.queryAssign = out;
  EXPECT_TRUE(c.check().ok());
  c.plan.buffers.erase(c.plan.buffers.begin() + 1);
  expectInvalid(c, "no k_assign buffer");
}

TEST(Params, UnknownBufferNameIsReported) {
  LaunchPlan plan = smallPlan();
  plan.buffers.push_back({"bogus", Sym::QHeads, 1, 0, 0, 4});
  Status s = checkPlanBuffers(plan);
  EXPECT_EQ(s.code, StatusCode::Internal);
  EXPECT_NE(s.message.find("'bogus'"), std::string::npos);
  EXPECT_NE(s.message.find("q_centroids"), std::string::npos);
  EXPECT_TRUE(checkPlanBuffers(smallPlan()).ok());
}

TEST(Params, GridLimits) {
  KernelLaunch l = smallPlan().launches[0];
  unsigned grid[3];
  Shape s{1, 1, 1, 1000, 1};
  ASSERT_TRUE(launchGrid(l, s, grid).ok());
  EXPECT_EQ(grid[0], 4u);
  EXPECT_EQ(grid[1], 1u);
  EXPECT_EQ(grid[2], 1u);
  s = {70000, 1, 1, 1, 1};
  Status st = launchGrid(l, s, grid);
  EXPECT_EQ(st.code, StatusCode::InvalidArgument);
  EXPECT_NE(st.message.find("muse_kmeans_assign_q"), std::string::npos);
}

} // namespace
} // namespace muse
