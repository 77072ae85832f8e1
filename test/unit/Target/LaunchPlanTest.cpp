//===- LaunchPlanTest.cpp - DimExpr, BufferSpec, layout and serialisation -===//
#include "muse/Target/Cuda/LaunchPlan.h"

#include <gtest/gtest.h>

#include <string>

using namespace muse;

namespace {

Shape shape(int64_t B, int64_t H, int64_t Hkv, int64_t N, int64_t M) {
  Shape s;
  s.B = B;
  s.H = H;
  s.Hkv = Hkv;
  s.N = N;
  s.M = M;
  return s;
}

DimExpr dim(Sym sym, int64_t div = 1, int64_t mul = 1) {
  DimExpr e;
  e.sym = sym;
  e.div = div;
  e.mul = mul;
  return e;
}

BufferSpec buffer(const std::string &name, Sym heads, int64_t perN, int64_t perM, int64_t fixed,
                  int64_t elem) {
  BufferSpec b;
  b.name = name;
  b.heads = heads;
  b.perN = perN;
  b.perM = perM;
  b.fixed = fixed;
  b.elemBytes = elem;
  return b;
}

KernelLaunch launch(const std::string &kernel, DimExpr x, DimExpr y, DimExpr z, int block,
                    int shared, const std::string &comment, LaunchView view = LaunchView::Full) {
  KernelLaunch l;
  l.kernel = kernel;
  l.grid[0] = x;
  l.grid[1] = y;
  l.grid[2] = z;
  l.block = block;
  l.sharedBytes = shared;
  l.comment = comment;
  l.view = view;
  return l;
}

/// A plan with every view, every symbol and a backward part.
LaunchPlan samplePlan() {
  LaunchPlan p;
  p.buffers = {buffer("q_centroids", Sym::QHeads, 0, 0, 1024, 4),
               buffer("k_assign", Sym::KHeads, 0, 1, 0, 4),
               buffer("summaries", Sym::QHeads, 3, 2, 17, 2)};
  p.launches = {
      launch("muse_kmeans_init_k", dim(Sym::One, 1, 2), dim(Sym::KHeads), dim(Sym::One), 256, 0,
             "k-means init (keys)"),
      launch("muse_window", dim(Sym::N, 64), dim(Sym::QHeads), dim(Sym::One), 128, 49152,
             "exact window"),
      launch("muse_level_clear", dim(Sym::N, 256, 4), dim(Sym::QHeads), dim(Sym::One), 256, 0,
             "level clear", LaunchView::Level),
      launch("muse_seg_summarize", dim(Sym::One, 1, 64), dim(Sym::QHeads), dim(Sym::One), 128,
             1024, "segment summaries", LaunchView::Segment),
      launch("muse_seg_far", dim(Sym::N, 128), dim(Sym::QHeads, 1, 3), dim(Sym::M, 7, 2), 128, 0,
             "served far field with = and spaces", LaunchView::Served)};
  p.backwardBuffers = {buffer("bwd_pg", Sym::QHeads, 128, 0, 0, 4),
                       buffer("bwd_delta", Sym::QHeads, 1, 0, 0, 4)};
  p.backwardLaunches = {
      launch("muse_bwd_delta", dim(Sym::N, 256), dim(Sym::QHeads), dim(Sym::One), 256, 0,
             "backward delta"),
      launch("muse_bwd_far", dim(Sym::N, 32), dim(Sym::QHeads), dim(Sym::One), 128, 4096,
             "backward far field")};
  return p;
}

void expectSameLaunch(const KernelLaunch &a, const KernelLaunch &b) {
  EXPECT_EQ(a.kernel, b.kernel);
  for (int d = 0; d < 3; ++d) {
    EXPECT_EQ(a.grid[d].sym, b.grid[d].sym) << a.kernel << " dim " << d;
    EXPECT_EQ(a.grid[d].div, b.grid[d].div) << a.kernel << " dim " << d;
    EXPECT_EQ(a.grid[d].mul, b.grid[d].mul) << a.kernel << " dim " << d;
  }
  EXPECT_EQ(a.block, b.block);
  EXPECT_EQ(a.sharedBytes, b.sharedBytes);
  EXPECT_EQ(a.comment, b.comment);
  EXPECT_EQ(a.view, b.view) << a.kernel;
}

void expectSameBuffer(const BufferSpec &a, const BufferSpec &b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.heads, b.heads);
  EXPECT_EQ(a.perN, b.perN);
  EXPECT_EQ(a.perM, b.perM);
  EXPECT_EQ(a.fixed, b.fixed);
  EXPECT_EQ(a.elemBytes, b.elemBytes);
}

TEST(DimExpr, Eval) {
  Shape s = shape(2, 8, 2, 1000, 300);
  EXPECT_EQ(dim(Sym::One).eval(s), 1);
  EXPECT_EQ(dim(Sym::One, 1, 7).eval(s), 7);
  EXPECT_EQ(dim(Sym::N).eval(s), 1000);
  EXPECT_EQ(dim(Sym::M).eval(s), 300);
  EXPECT_EQ(dim(Sym::QHeads).eval(s), 16);
  EXPECT_EQ(dim(Sym::KHeads).eval(s), 4);
  EXPECT_EQ(dim(Sym::N, 64).eval(s), 16);      // ceil(1000/64) = 16
  EXPECT_EQ(dim(Sym::N, 8).eval(s), 125);      // exact division
  EXPECT_EQ(dim(Sym::M, 256, 4).eval(s), 8);   // ceil(300/256)*4
  EXPECT_EQ(dim(Sym::KHeads, 3, 5).eval(s), 10); // ceil(4/3)*5
  EXPECT_EQ(dim(Sym::N, 0).eval(s), 1000);     // div < 1 counts as 1
  EXPECT_EQ(dim(Sym::N, 2048).eval(s), 1);
}

TEST(DimExpr, Str) {
  EXPECT_EQ(dim(Sym::One).str(), "1");
  EXPECT_EQ(dim(Sym::One, 1, 16).str(), "16");
  EXPECT_EQ(dim(Sym::One, 4, 16).str(), "16"); // ceil(1/div) is 1
  EXPECT_EQ(dim(Sym::N).str(), "N");
  EXPECT_EQ(dim(Sym::M, 1, 3).str(), "M*3");
  EXPECT_EQ(dim(Sym::QHeads).str(), "B*H");
  EXPECT_EQ(dim(Sym::KHeads).str(), "B*Hkv");
  EXPECT_EQ(dim(Sym::N, 64).str(), "ceil(N/64)");
  EXPECT_EQ(dim(Sym::KHeads, 2, 8).str(), "ceil(B*Hkv/2)*8");
  EXPECT_STREQ(symName(Sym::QHeads), "B*H");
  EXPECT_STREQ(viewName(LaunchView::Served), "served");
}

TEST(BufferSpec, Bytes) {
  Shape s = shape(2, 8, 2, 1000, 300);
  // elem * heads * (perN*N + perM*M + fixed)
  EXPECT_EQ(buffer("q_centroids", Sym::QHeads, 0, 0, 1024, 4).bytes(s), 4 * 16 * 1024);
  EXPECT_EQ(buffer("k_assign", Sym::KHeads, 0, 1, 0, 4).bytes(s), 4 * 4 * 300);
  EXPECT_EQ(buffer("summaries", Sym::QHeads, 3, 2, 17, 2).bytes(s),
            2 * 16 * (3 * 1000 + 2 * 300 + 17));
  EXPECT_EQ(buffer("empty", Sym::QHeads, 0, 0, 0, 4).bytes(s), 0);
}

TEST(LaunchPlan, WorkspaceAndOffsetsAre256Aligned) {
  LaunchPlan p = samplePlan();
  Shape s = shape(1, 3, 1, 5, 7);
  // q_centroids: 4*3*1024 = 12288 (aligned already); k_assign: 4*1*7 = 28 -> 256;
  // summaries: 2*3*(15+14+17) = 276 -> 512.
  std::vector<int64_t> off = p.bufferOffsets(s);
  ASSERT_EQ(off.size(), 3u);
  EXPECT_EQ(off[0], 0);
  EXPECT_EQ(off[1], 12288);
  EXPECT_EQ(off[2], 12288 + 256);
  EXPECT_EQ(p.workspaceBytes(s), 12288 + 256 + 512);
  for (int64_t o : off)
    EXPECT_EQ(o % 256, 0);
  // Backward buffers follow the forward's: bwd_pg 4*3*128*5 = 7680 (aligned),
  // bwd_delta 4*3*5 = 60 -> 256.
  std::vector<int64_t> boff = p.backwardBufferOffsets(s);
  ASSERT_EQ(boff.size(), 2u);
  EXPECT_EQ(boff[0], p.workspaceBytes(s));
  EXPECT_EQ(boff[1], p.workspaceBytes(s) + 7680);
  EXPECT_EQ(p.backwardWorkspaceBytes(s), p.workspaceBytes(s) + 7680 + 256);

  LaunchPlan empty;
  EXPECT_EQ(empty.workspaceBytes(s), 0);
  EXPECT_TRUE(empty.bufferOffsets(s).empty());
  // A zero-byte buffer takes no room, and the next one starts where it would.
  empty.buffers = {buffer("a", Sym::QHeads, 0, 0, 0, 4), buffer("b", Sym::QHeads, 0, 0, 1, 4)};
  EXPECT_EQ(empty.bufferOffsets(s), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(empty.workspaceBytes(s), 256);
}

TEST(LaunchPlan, BackwardScratchReusesTheTransientBuffers) {
  LaunchPlan p = samplePlan();
  Shape s = shape(1, 3, 1, 5, 7);
  const int64_t persistent = p.workspaceBytes(s); // 12288 + 256 + 512
  EXPECT_EQ(p.firstTransient(), 3u);
  // acc_o: 4*3*(64*5) = 3840 -> 3840; last in the forward's list.
  p.buffers.push_back(buffer("acc_o", Sym::QHeads, 64, 0, 0, 4));
  EXPECT_EQ(p.firstTransient(), 3u);
  EXPECT_EQ(p.persistentBytes(s), persistent);
  EXPECT_EQ(p.workspaceBytes(s), persistent + 3840);
  EXPECT_EQ(p.bufferOffsets(s).back(), persistent);
  // The backward's scratch (bwd_pg 7680 + bwd_delta 256) starts where acc_o
  // did and takes the larger of the two.
  std::vector<int64_t> boff = p.backwardBufferOffsets(s);
  ASSERT_EQ(boff.size(), 2u);
  EXPECT_EQ(boff[0], persistent);
  EXPECT_EQ(p.backwardWorkspaceBytes(s), persistent + 7680 + 256);
  // A transient buffer larger than the scratch sets the size.
  p.buffers.back().perN = 1000; // 4*3*5000 = 60000 -> 60160
  EXPECT_EQ(p.backwardWorkspaceBytes(s), persistent + 60160);
}

TEST(LaunchPlan, SerializeText) {
  LaunchPlan p = samplePlan();
  std::string text = p.serialize();
  EXPECT_EQ(text.rfind("muse-launch-plan 1\n", 0), 0u);
  EXPECT_NE(text.find("buffer summaries heads=B*H perN=3 perM=2 fixed=17 elem=2\n"),
            std::string::npos);
  EXPECT_NE(text.find("launch muse_seg_far grid=ceil(N/128),B*H*3,ceil(M/7)*2 block=128 "
                      "shared=0 view=served comment=served far field with = and spaces\n"),
            std::string::npos);
  // Full launches carry no view field.
  EXPECT_NE(text.find("launch muse_window grid=ceil(N/64),B*H,1 block=128 shared=49152 "
                      "comment=exact window\n"),
            std::string::npos);
  EXPECT_NE(text.find("backward buffer bwd_pg heads=B*H perN=128 perM=0 fixed=0 elem=4\n"),
            std::string::npos);
  EXPECT_NE(text.find("backward launch muse_bwd_far grid=ceil(N/32),B*H,1 block=128 "
                      "shared=4096 comment=backward far field\n"),
            std::string::npos);
  EXPECT_EQ(text.size() - text.rfind("end\n"), 4u);
}

TEST(LaunchPlan, RoundTripForwardBackwardAndViews) {
  LaunchPlan p = samplePlan();
  std::string text = p.serialize();
  LaunchPlan q;
  std::string error = "stale";
  ASSERT_TRUE(LaunchPlan::deserialize(text, q, error)) << error;
  EXPECT_TRUE(error.empty());
  ASSERT_EQ(q.buffers.size(), p.buffers.size());
  ASSERT_EQ(q.launches.size(), p.launches.size());
  ASSERT_EQ(q.backwardBuffers.size(), p.backwardBuffers.size());
  ASSERT_EQ(q.backwardLaunches.size(), p.backwardLaunches.size());
  for (size_t i = 0; i < p.buffers.size(); ++i)
    expectSameBuffer(q.buffers[i], p.buffers[i]);
  for (size_t i = 0; i < p.launches.size(); ++i)
    expectSameLaunch(q.launches[i], p.launches[i]);
  for (size_t i = 0; i < p.backwardBuffers.size(); ++i)
    expectSameBuffer(q.backwardBuffers[i], p.backwardBuffers[i]);
  for (size_t i = 0; i < p.backwardLaunches.size(); ++i)
    expectSameLaunch(q.backwardLaunches[i], p.backwardLaunches[i]);
  EXPECT_EQ(q.launches[2].view, LaunchView::Level);
  EXPECT_EQ(q.launches[3].view, LaunchView::Segment);
  EXPECT_EQ(q.launches[4].view, LaunchView::Served);
  EXPECT_TRUE(q.hasBackward());
  // Bit-for-bit equal re-serialisation, and the same layout.
  EXPECT_EQ(q.serialize(), text);
  Shape s = shape(2, 4, 2, 333, 333);
  EXPECT_EQ(q.workspaceBytes(s), p.workspaceBytes(s));
  EXPECT_EQ(q.backwardBufferOffsets(s), p.backwardBufferOffsets(s));

  // A forward-only plan stays forward-only.
  LaunchPlan fwd = samplePlan();
  fwd.backwardBuffers.clear();
  fwd.backwardLaunches.clear();
  LaunchPlan r;
  ASSERT_TRUE(LaunchPlan::deserialize(fwd.serialize(), r, error)) << error;
  EXPECT_FALSE(r.hasBackward());
  EXPECT_TRUE(r.backwardBuffers.empty());
  EXPECT_EQ(r.serialize(), fwd.serialize());
  EXPECT_EQ(fwd.serialize().find("backward"), std::string::npos);
}

std::string deserializeError(const std::string &text) {
  LaunchPlan out;
  out.buffers = {buffer("untouched", Sym::QHeads, 0, 0, 1, 4)};
  std::string error;
  EXPECT_FALSE(LaunchPlan::deserialize(text, out, error)) << text;
  // A failed parse leaves the output alone.
  EXPECT_EQ(out.buffers.size(), 1u);
  EXPECT_TRUE(out.launches.empty());
  return error;
}

TEST(LaunchPlan, DeserializeErrorsNameTheLine) {
  EXPECT_EQ(deserializeError(""), "launch plan: empty text");
  EXPECT_EQ(deserializeError("muse-launch-plan 2\nend\n"),
            "launch plan line 1: expected the header 'muse-launch-plan 1'");
  EXPECT_EQ(deserializeError("muse-launch-plan 1\nbuffer a heads=B*H perN=0 perM=0 fixed=1 elem=4\n"),
            "launch plan: missing 'end' (truncated?)");
  EXPECT_EQ(deserializeError("muse-launch-plan 1\n"
                             "buffer a heads=B*H perN=0 perM=0 fixed=1 elem=4\n"
                             "buffer b heads=B*Q perN=0 perM=0 fixed=1 elem=4\nend\n"),
            "launch plan line 3: buffer 'b': bad heads='B*Q' (allowed: B*H, B*Hkv)");
  EXPECT_EQ(deserializeError("muse-launch-plan 1\nbuffer a heads=B*H perN=-1 perM=0 fixed=1 elem=4\nend\n"),
            "launch plan line 2: buffer 'a': bad perN='-1' (expected a non-negative integer)");
  EXPECT_EQ(deserializeError("muse-launch-plan 1\n"
                             "launch k grid=ceil(K/4),B*H,1 block=128 shared=0 comment=x\nend\n"),
            "launch plan line 2: launch 'k': malformed dimension 'ceil(K/4)': expected "
            "ceil(SYM/DIV) with SYM one of N, M, B*H, B*Hkv and DIV >= 1");
  EXPECT_EQ(deserializeError("muse-launch-plan 1\n"
                             "launch k grid=4,B*H block=128 shared=0 comment=x\nend\n"),
            "launch plan line 2: launch 'k': grid needs three dimensions X,Y,Z, found '4,B*H'");
  EXPECT_EQ(deserializeError("muse-launch-plan 1\n"
                             "launch k grid=1,1,1 block=128 shared=0 view=diagonal comment=x\nend\n"),
            "launch plan line 2: launch 'k': bad view='diagonal' (allowed: full, level, "
            "segment, served)");
  EXPECT_EQ(deserializeError("muse-launch-plan 1\n"
                             "launch k grid=1,1,1 block=0 shared=0 comment=x\nend\n"),
            "launch plan line 2: launch 'k': bad block='0'");
  EXPECT_EQ(deserializeError("muse-launch-plan 1\n"
                             "launch k grid=1,1,1 block=1 shared=0 comment=x\n"
                             "backward kernel k\nend\n"),
            "launch plan line 3: expected 'backward buffer' or 'backward launch', found "
            "'backward kernel k'");
  EXPECT_EQ(deserializeError("muse-launch-plan 1\n\nkernel k\nend\n"),
            "launch plan line 2: expected 'buffer', 'launch' or 'end', found ''");
  EXPECT_EQ(deserializeError("muse-launch-plan 1\nend\nlaunch k\n"),
            "launch plan line 3: text after 'end'");
  // The line number counts from the top of the text, backward records included.
  std::string text = samplePlan().serialize();
  size_t lines = 0;
  for (char c : text)
    lines += c == '\n';
  std::string broken = text.substr(0, text.size() - 4) + "backward buffer x heads=B*H\nend\n";
  EXPECT_EQ(deserializeError(broken), "launch plan line " + std::to_string(lines) +
                                          ": buffer 'x' needs exactly heads=, perN=, perM=, "
                                          "fixed=, elem=");
}

} // namespace
