//===- HostLauncherTest.cpp - The printed launcher does what the runtime does -===//
//
// `muse-gen emit --emit=host` prints C++ launchers that a user may copy
// instead of linking libmuse. This test compiles the printed launchers of a
// few specs (generated at build time, see CMakeLists.txt) and checks them
// against the runtime's own building blocks (fillParams, fillBackwardParams,
// causalSaveBytes, bindCausalSave, levelView, launchGrid): the workspace sizes
// for several shapes, and every launch's kernel, grid, block, shared memory
// and MuseParams, forward and backward. The CUDA driver entry points the
// launchers call are defined here to record each launch instead of running
// it, so no GPU is needed.
//
//===----------------------------------------------------------------------===//
#include "CausalLevels.h"

#include "muse/Compiler/Compiler.h"
#include "muse/Runtime/Engine.h"
#include "muse/Runtime/Params.h"
#include "muse/Spec/Spec.h"
#include "muse/params.cuh"

#include <cuda.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <vector>

// The launchers printed for the specs named in CMakeLists.txt (one generated
// translation unit each); a changed signature fails to link.
size_t muse_causal_d64_order0_workspace_bytes(long long, long long, long long, long long,
                                              long long, long long, long long);
size_t muse_causal_d64_order0_backward_workspace_bytes(long long, long long, long long, long long,
                                                       long long, long long, long long);
CUresult muse_causal_d64_order0_launch(CUmodule, CUstream, MuseParams, CUdeviceptr, long long,
                                       long long);
CUresult muse_causal_d64_order0_backward(CUmodule, CUstream, MuseParams, CUdeviceptr, long long,
                                         long long);
size_t muse_causal_d64_order1_workspace_bytes(long long, long long, long long, long long,
                                              long long, long long, long long);
size_t muse_causal_d64_order1_backward_workspace_bytes(long long, long long, long long, long long,
                                                       long long, long long, long long);
CUresult muse_causal_d64_order1_launch(CUmodule, CUstream, MuseParams, CUdeviceptr, long long,
                                       long long);
CUresult muse_causal_d64_order1_backward(CUmodule, CUstream, MuseParams, CUdeviceptr, long long,
                                         long long);
size_t muse_acausal_f16_gqa4_workspace_bytes(long long, long long, long long, long long,
                                             long long);
size_t muse_acausal_f16_gqa4_backward_workspace_bytes(long long, long long, long long, long long,
                                                      long long);
CUresult muse_acausal_f16_gqa4_launch(CUmodule, CUstream, MuseParams, CUdeviceptr);
CUresult muse_acausal_f16_gqa4_backward(CUmodule, CUstream, MuseParams, CUdeviceptr);

namespace {

/// One launch as the driver saw it.
struct Launch {
  std::string kernel;
  unsigned grid[3];
  unsigned block[3];
  unsigned shared;
  CUstream stream;
  MuseParams params;
};

std::vector<Launch> recorded;
std::deque<std::string> functionNames; // a CUfunction is a pointer to one of these

} // namespace

// The two driver entry points a printed launcher calls, recording instead of
// launching.
extern "C" CUresult CUDAAPI cuModuleGetFunction(CUfunction *f, CUmodule, const char *name) {
  functionNames.emplace_back(name);
  *f = reinterpret_cast<CUfunction>(&functionNames.back());
  return CUDA_SUCCESS;
}

extern "C" CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                           unsigned bx, unsigned by, unsigned bz, unsigned shared,
                                           CUstream stream, void **params, void **extra) {
  if (extra || !params)
    return CUDA_ERROR_INVALID_VALUE;
  Launch l;
  l.kernel = *reinterpret_cast<const std::string *>(f);
  l.grid[0] = gx, l.grid[1] = gy, l.grid[2] = gz;
  l.block[0] = bx, l.block[1] = by, l.block[2] = bz;
  l.shared = shared;
  l.stream = stream;
  std::memcpy(&l.params, params[0], sizeof(MuseParams));
  recorded.push_back(l);
  return CUDA_SUCCESS;
}

namespace muse {
namespace {

/// The fields of `a` and `b` that differ, by name (field by field: the
/// struct has padding, whose bytes a copy need not keep).
std::string paramsDiff(const MuseParams &a, const MuseParams &b) {
  std::string out;
#define MUSE_FIELD(f)                                                                             \
  if (a.f != b.f)                                                                                  \
    out += std::string(" ") + #f;
  MUSE_FIELD(q) MUSE_FIELD(k) MUSE_FIELD(v) MUSE_FIELD(o) MUSE_FIELD(lse)
  MUSE_FIELD(q_sb) MUSE_FIELD(q_sh) MUSE_FIELD(q_sn) MUSE_FIELD(k_sb) MUSE_FIELD(k_sh)
  MUSE_FIELD(k_sm) MUSE_FIELD(v_sb) MUSE_FIELD(v_sh) MUSE_FIELD(v_sm) MUSE_FIELD(o_sb)
  MUSE_FIELD(o_sh) MUSE_FIELD(o_sn)
  MUSE_FIELD(B) MUSE_FIELD(H) MUSE_FIELD(Hkv) MUSE_FIELD(N) MUSE_FIELD(M) MUSE_FIELD(scale)
  MUSE_FIELD(q_centroids) MUSE_FIELD(k_centroids) MUSE_FIELD(q_sums) MUSE_FIELD(k_sums)
  MUSE_FIELD(q_counts) MUSE_FIELD(k_counts) MUSE_FIELD(q_assign) MUSE_FIELD(k_assign)
  MUSE_FIELD(q_offsets) MUSE_FIELD(k_offsets) MUSE_FIELD(q_perm) MUSE_FIELD(k_perm)
  MUSE_FIELD(summaries) MUSE_FIELD(near) MUSE_FIELD(row_lse)
  MUSE_FIELD(seg_count) MUSE_FIELD(seg_level) MUSE_FIELD(level_segs) MUSE_FIELD(seq_len)
  MUSE_FIELD(batch) MUSE_FIELD(seg_stride) MUSE_FIELD(seg_qbase) MUSE_FIELD(part_o)
  MUSE_FIELD(run_lse) MUSE_FIELD(served) MUSE_FIELD(out_key) MUSE_FIELD(out_query)
  MUSE_FIELD(out_served) MUSE_FIELD(merge_o) MUSE_FIELD(merge_o_sb) MUSE_FIELD(merge_o_sh)
  MUSE_FIELD(merge_o_sn) MUSE_FIELD(merge_lse)
  MUSE_FIELD(o_in) MUSE_FIELD(dout) MUSE_FIELD(dlse) MUSE_FIELD(dq) MUSE_FIELD(dk) MUSE_FIELD(dv)
  MUSE_FIELD(do_sb) MUSE_FIELD(do_sh) MUSE_FIELD(do_sn) MUSE_FIELD(dq_sb) MUSE_FIELD(dq_sh)
  MUSE_FIELD(dq_sn) MUSE_FIELD(dk_sb) MUSE_FIELD(dk_sh) MUSE_FIELD(dk_sm) MUSE_FIELD(dv_sb)
  MUSE_FIELD(dv_sh) MUSE_FIELD(dv_sm)
  MUSE_FIELD(bwd_pg) MUSE_FIELD(bwd_dr) MUSE_FIELD(bwd_delta) MUSE_FIELD(bwd_dqbar) MUSE_FIELD(bwd_pairs)
#undef MUSE_FIELD
  return out;
}

/// A printed launcher, with the causal arguments bound where it takes them.
struct Printed {
  const char *spec; // file name under specs/
  std::function<size_t(const Shape &, long long S, long long w)> workspaceBytes;
  std::function<size_t(const Shape &, long long S, long long w)> backwardWorkspaceBytes;
  std::function<CUresult(CUstream, const MuseParams &, CUdeviceptr, long long, long long)> launch;
  std::function<CUresult(CUstream, const MuseParams &, CUdeviceptr, long long, long long)> backward;
};

#define MUSE_CAUSAL_PRINTED(name)                                                                 \
  Printed {                                                                                        \
    #name ".yaml",                                                                                 \
        [](const Shape &s, long long S, long long w) {                                             \
          return muse_##name##_workspace_bytes(s.B, s.H, s.Hkv, s.N, s.M, S, w);                   \
        },                                                                                         \
        [](const Shape &s, long long S, long long w) {                                             \
          return muse_##name##_backward_workspace_bytes(s.B, s.H, s.Hkv, s.N, s.M, S, w);          \
        },                                                                                         \
        [](CUstream st, const MuseParams &p, CUdeviceptr ws, long long S, long long w) {          \
          return muse_##name##_launch(nullptr, st, p, ws, S, w);                                   \
        },                                                                                         \
        [](CUstream st, const MuseParams &p, CUdeviceptr ws, long long S, long long w) {          \
          return muse_##name##_backward(nullptr, st, p, ws, S, w);                                 \
        }                                                                                          \
  }

std::vector<Printed> printedLaunchers() {
  return {
      MUSE_CAUSAL_PRINTED(causal_d64_order0),
      MUSE_CAUSAL_PRINTED(causal_d64_order1),
      Printed{"acausal_f16_gqa4.yaml",
              [](const Shape &s, long long, long long) {
                return muse_acausal_f16_gqa4_workspace_bytes(s.B, s.H, s.Hkv, s.N, s.M);
              },
              [](const Shape &s, long long, long long) {
                return muse_acausal_f16_gqa4_backward_workspace_bytes(s.B, s.H, s.Hkv, s.N, s.M);
              },
              [](CUstream st, const MuseParams &p, CUdeviceptr ws, long long, long long) {
                return muse_acausal_f16_gqa4_launch(nullptr, st, p, ws);
              },
              [](CUstream st, const MuseParams &p, CUdeviceptr ws, long long, long long) {
                return muse_acausal_f16_gqa4_backward(nullptr, st, p, ws);
              }},
  };
}

/// The spec and its plan, compiled in-process (no NVRTC).
struct Compiled {
  Spec spec;
  LaunchPlan plan;
};

Compiled compile(const std::string &file) {
  SpecResult r = parseSpecFile(std::string(MUSE_SPECS_DIR) + "/" + file);
  EXPECT_TRUE(r.ok()) << (r.diagnostics.empty() ? "" : r.diagnostics[0].str());
  if (!r.ok())
    return {};
  CompileOutput out = compileSpec(*r.spec);
  EXPECT_TRUE(out.ok) << (out.errors.empty() ? "" : out.errors[0]);
  return {*r.spec, out.plan};
}

/// The launches the runtime makes for `launches` (LoadedAttention.cpp
/// runLaunches): Full launches once on `params`, every run of per-level
/// launches once per level, each on its view.
std::vector<Launch> runtimeLaunches(const Spec &spec, const std::vector<KernelLaunch> &launches,
                                    const MuseParams &params, const Shape &shape,
                                    CUstream stream) {
  std::vector<Launch> out;
  auto add = [&](const KernelLaunch &l, const MuseParams &p, const Shape &s) {
    Launch r;
    r.kernel = l.kernel;
    Status st = launchGrid(l, s, r.grid);
    EXPECT_TRUE(st.ok()) << st.message;
    r.block[0] = unsigned(l.block), r.block[1] = 1, r.block[2] = 1;
    r.shared = unsigned(l.sharedBytes);
    r.stream = stream;
    r.params = p;
    out.push_back(r);
  };
  const int levels =
      spec.causal ? causalLevelCount(shape.N, spec.blockSize, spec.windowBlocks) : 0;
  for (size_t i = 0; i < launches.size();) {
    if (launches[i].view == LaunchView::Full) {
      add(launches[i++], params, shape);
      continue;
    }
    size_t end = i;
    while (end < launches.size() && launches[end].view != LaunchView::Full)
      ++end;
    for (int lv = 0; lv < levels; ++lv) {
      const LevelGeometry g = levelGeometry(shape.N, spec.blockSize, spec.windowBlocks, lv);
      for (size_t j = i; j < end; ++j) {
        MuseParams view;
        Shape viewShape;
        levelView(launches[j].view, g, params, shape, spec.valueDim, view, viewShape);
        add(launches[j], view, viewShape);
      }
    }
    i = end;
  }
  return out;
}

void expectSameLaunches(const std::vector<Launch> &printed, const std::vector<Launch> &runtime) {
  ASSERT_EQ(printed.size(), runtime.size());
  for (size_t i = 0; i < printed.size(); ++i) {
    SCOPED_TRACE("launch " + std::to_string(i) + " (" + runtime[i].kernel + ")");
    EXPECT_EQ(printed[i].kernel, runtime[i].kernel);
    for (int d = 0; d < 3; ++d) {
      EXPECT_EQ(printed[i].grid[d], runtime[i].grid[d]) << "grid " << d;
      EXPECT_EQ(printed[i].block[d], runtime[i].block[d]) << "block " << d;
    }
    EXPECT_EQ(printed[i].shared, runtime[i].shared);
    EXPECT_EQ(printed[i].stream, runtime[i].stream);
    EXPECT_EQ(paramsDiff(printed[i].params, runtime[i].params), "");
  }
}

template <typename T> T *fake(uintptr_t address) { return reinterpret_cast<T *>(address); }

/// Shapes with at least one causal level for window 1 (2, 2 and 4 levels),
/// in units of the spec's block size S (2048, 1500 and 5000 rows at S = 512;
/// the acausal spec uses those), GQA group 4 for the acausal spec.
int64_t blockOf(const Spec &spec) { return spec.causal ? spec.blockSize : 512; }
std::vector<Shape> launchShapes(const Spec &spec) {
  const int64_t r = spec.kvHeadsRatio, S = blockOf(spec);
  return {{1, 2 * r, 2, 4 * S, 4 * S},
          {2, 3 * r, 3, 3 * S - 36, 3 * S - 36},
          {1, r, 1, 10 * S - 120, 10 * S - 120}};
}

TEST(HostLauncher, WorkspaceBytesMatchTheRuntime) {
  for (const Printed &printed : printedLaunchers()) {
    SCOPED_TRACE(printed.spec);
    Compiled c = compile(printed.spec);
    ASSERT_FALSE(c.plan.launches.empty());
    std::vector<Shape> shapes = launchShapes(c.spec);
    const int64_t r = c.spec.kvHeadsRatio;
    // No causal level (N within the window), and a 1-row call.
    shapes.push_back({3, 2 * r, 2, blockOf(c.spec), blockOf(c.spec)});
    shapes.push_back({1, r, 1, 1, 1});
    for (const Shape &s : shapes) {
      SCOPED_TRACE("B=" + std::to_string(s.B) + " H=" + std::to_string(s.H) +
                   " N=" + std::to_string(s.N));
      const int64_t save =
          c.spec.causal ? causalSaveBytes(s, c.spec.blockSize, c.spec.windowBlocks) : 0;
      if (c.spec.causal && causalLevelCount(s.N, c.spec.blockSize, c.spec.windowBlocks) > 0) {
        EXPECT_GT(save, 0);
      }
      EXPECT_EQ(int64_t(printed.workspaceBytes(s, c.spec.blockSize, c.spec.windowBlocks)),
                c.plan.workspaceBytes(s) + save);
      EXPECT_EQ(int64_t(printed.backwardWorkspaceBytes(s, c.spec.blockSize, c.spec.windowBlocks)),
                c.plan.backwardWorkspaceBytes(s) + save);
    }
  }
}

TEST(HostLauncher, ForwardAndBackwardLaunchAsTheRuntime) {
  CUstream stream = fake<CUstream_st>(0x5000);
  for (const Printed &printed : printedLaunchers()) {
    SCOPED_TRACE(printed.spec);
    Compiled c = compile(printed.spec);
    ASSERT_TRUE(c.plan.hasBackward());
    const Spec &spec = c.spec;
    for (const Shape &s : launchShapes(spec)) {
      SCOPED_TRACE("B=" + std::to_string(s.B) + " H=" + std::to_string(s.H) +
                   " N=" + std::to_string(s.N));
      const int64_t D = spec.headDim, Dv = spec.valueDim;
      const int64_t save =
          spec.causal ? causalSaveBytes(s, spec.blockSize, spec.windowBlocks) : 0;
      if (spec.causal) {
        ASSERT_GT(save, 0);
      }
      void *workspace = fake<void>(0x7000000000);

      // Forward: the runtime's params (LoadedAttention.cpp forward).
      ForwardArgs a;
      a.shape = s;
      a.q = fake<void>(0x1000000000);
      a.k = fake<void>(0x2000000000);
      a.v = fake<void>(0x3000000000);
      a.o = fake<float>(0x4000000000);
      a.lse = fake<float>(0x4800000000);
      for (auto [stride, rows, width] : {std::tuple{a.qStride, s.N, D}, {a.kStride, s.M, D},
                                         {a.vStride, s.M, Dv}, {a.oStride, s.N, Dv}}) {
        stride[2] = width;
        stride[1] = rows * width;
        stride[0] = (stride == a.qStride || stride == a.oStride ? s.H : s.Hkv) * stride[1];
      }
      a.workspace = workspace;
      a.workspaceBytes = c.plan.workspaceBytes(s) + save;
      MuseParams params;
      // As LoadedAttention::forward: the save area between the persistent
      // buffers and the transient ones.
      Status st = fillParams(spec, c.plan, a, params, c.plan.firstTransient(), save);
      ASSERT_TRUE(st.ok()) << st.message;
      if (save > 0)
        bindCausalSave(s, spec.blockSize, spec.windowBlocks, workspace, c.plan.persistentBytes(s),
                       params);
      std::vector<Launch> expected = runtimeLaunches(spec, c.plan.launches, params, s, stream);

      // The printed launcher, on the params its comment says the caller fills.
      MuseParams p;
      std::memset(&p, 0, sizeof(p));
      p.q = a.q, p.k = a.k, p.v = a.v, p.o = static_cast<float *>(a.o), p.lse = a.lse;
      p.q_sb = a.qStride[0], p.q_sh = a.qStride[1], p.q_sn = a.qStride[2];
      p.k_sb = a.kStride[0], p.k_sh = a.kStride[1], p.k_sm = a.kStride[2];
      p.v_sb = a.vStride[0], p.v_sh = a.vStride[1], p.v_sm = a.vStride[2];
      p.o_sb = a.oStride[0], p.o_sh = a.oStride[1], p.o_sn = a.oStride[2];
      p.B = int(s.B), p.H = int(s.H), p.Hkv = int(s.Hkv), p.N = int(s.N), p.M = int(s.M);
      p.scale = float(spec.effectiveScale());
      p.seq_len = int(s.N), p.batch = int(s.B);
      recorded.clear();
      ASSERT_EQ(printed.launch(stream, p, CUdeviceptr(uintptr_t(workspace)), spec.blockSize,
                               spec.windowBlocks),
                CUDA_SUCCESS);
      {
        SCOPED_TRACE("forward");
        expectSameLaunches(recorded, expected);
      }
      if (spec.causal) {
        // The export writes where the backward's restore reads.
        bool exported = false;
        for (const Launch &l : recorded)
          if (l.kernel == "muse_causal_export") {
            exported = true;
            EXPECT_EQ(reinterpret_cast<char *>(l.params.out_query),
                      static_cast<char *>(workspace) + c.plan.persistentBytes(s));
          }
        EXPECT_TRUE(exported);
      }

      // Backward: the runtime's params (BackwardParams.cpp).
      BackwardArgs b;
      b.shape = s;
      b.q = a.q, b.k = a.k, b.v = a.v, b.o = a.o, b.lse = a.lse;
      std::memcpy(b.qStride, a.qStride, sizeof(b.qStride));
      std::memcpy(b.kStride, a.kStride, sizeof(b.kStride));
      std::memcpy(b.vStride, a.vStride, sizeof(b.vStride));
      std::memcpy(b.oStride, a.oStride, sizeof(b.oStride));
      b.dO = fake<void>(0x9000000000);
      b.dLse = fake<float>(0x9800000000);
      b.dq = fake<float>(0xa000000000);
      b.dk = fake<float>(0xb000000000);
      b.dv = fake<float>(0xc000000000);
      std::memcpy(b.dOStride, a.oStride, sizeof(b.dOStride));
      std::memcpy(b.dqStride, a.qStride, sizeof(b.dqStride));
      std::memcpy(b.dkStride, a.kStride, sizeof(b.dkStride));
      b.dvStride[2] = Dv, b.dvStride[1] = s.M * Dv, b.dvStride[0] = s.Hkv * s.M * Dv;
      b.workspace = workspace;
      b.workspaceBytes = c.plan.backwardWorkspaceBytes(s) + save;
      MuseParams bparams;
      st = fillBackwardParams(spec, c.plan, b, bparams);
      ASSERT_TRUE(st.ok()) << st.message;
      expected = runtimeLaunches(spec, c.plan.backwardLaunches, bparams, s, stream);

      p.o = nullptr, p.o_in = b.o; // the backward reads the forward's o in T, never writes o
      p.dout = b.dO, p.dlse = b.dLse, p.dq = static_cast<float *>(b.dq), p.dk = static_cast<float *>(b.dk), p.dv = static_cast<float *>(b.dv);
      p.do_sb = b.dOStride[0], p.do_sh = b.dOStride[1], p.do_sn = b.dOStride[2];
      p.dq_sb = b.dqStride[0], p.dq_sh = b.dqStride[1], p.dq_sn = b.dqStride[2];
      p.dk_sb = b.dkStride[0], p.dk_sh = b.dkStride[1], p.dk_sm = b.dkStride[2];
      p.dv_sb = b.dvStride[0], p.dv_sh = b.dvStride[1], p.dv_sm = b.dvStride[2];
      recorded.clear();
      ASSERT_EQ(printed.backward(stream, p, CUdeviceptr(uintptr_t(workspace)), spec.blockSize,
                                 spec.windowBlocks),
                CUDA_SUCCESS);
      {
        SCOPED_TRACE("backward");
        expectSameLaunches(recorded, expected);
      }
      if (spec.causal) {
        bool restored = false;
        for (const Launch &l : recorded)
          if (l.kernel == "muse_backward_restore") {
            restored = true;
            EXPECT_EQ(reinterpret_cast<char *>(l.params.out_query),
                      static_cast<char *>(workspace) + c.plan.persistentBytes(s));
          }
        EXPECT_TRUE(restored);
      }
    }
  }
}

} // namespace
} // namespace muse
