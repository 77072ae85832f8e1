//===- Params.cpp - Forward arguments to MuseParams -----------------------===//

#include "muse/Runtime/Params.h"

#include "muse/params.cuh"

#include "CausalLevels.h"

#include <climits>
#include <cstddef>
#include <cstring>
#include <tuple>

namespace muse {
namespace {

struct WorkspaceField {
  const char *name;
  size_t offset; // of the pointer inside MuseParams
};

#define MUSE_FIELD(f) {#f, offsetof(MuseParams, f)}
const WorkspaceField kFields[] = {
    MUSE_FIELD(q_centroids), MUSE_FIELD(k_centroids), MUSE_FIELD(q_sums),
    MUSE_FIELD(k_sums),      MUSE_FIELD(q_counts),    MUSE_FIELD(k_counts),
    MUSE_FIELD(q_assign),    MUSE_FIELD(k_assign),    MUSE_FIELD(q_offsets),
    MUSE_FIELD(k_offsets),   MUSE_FIELD(q_perm),      MUSE_FIELD(k_perm),
    MUSE_FIELD(summaries),   MUSE_FIELD(near),        MUSE_FIELD(row_lse),
    MUSE_FIELD(dipole_kv),   MUSE_FIELD(dipole_means),
    MUSE_FIELD(part_o),      MUSE_FIELD(run_lse),     MUSE_FIELD(served),
    MUSE_FIELD(bwd_pg),      MUSE_FIELD(bwd_dr),      MUSE_FIELD(bwd_delta),
    MUSE_FIELD(bwd_dqbar),   MUSE_FIELD(bwd_pairs),
    MUSE_FIELD(acc_o),       MUSE_FIELD(acc_dq),      MUSE_FIELD(acc_dk),
    MUSE_FIELD(acc_dv),
};
#undef MUSE_FIELD

const WorkspaceField *findField(const std::string &name) {
  for (const WorkspaceField &f : kFields)
    if (name == f.name)
      return &f;
  return nullptr;
}

Status invalid(const std::string &msg) { return {StatusCode::InvalidArgument, msg}; }

std::string shapeText(const Shape &s) {
  return "B=" + std::to_string(s.B) + " H=" + std::to_string(s.H) +
         " Hkv=" + std::to_string(s.Hkv) + " N=" + std::to_string(s.N) +
         " M=" + std::to_string(s.M);
}

Status checkStrides(const char *tensor, const int64_t stride[3], const char *dims) {
  for (int i = 0; i < 3; ++i)
    if (stride[i] < 0)
      return invalid(std::string(tensor) + " stride " + std::to_string(i) + " (" + dims +
                     ") is " + std::to_string(stride[i]) +
                     ": strides are in elements and must be >= 0");
  return Status::success();
}

} // namespace

const std::vector<std::string> &workspaceFieldNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const WorkspaceField &f : kFields)
      n.push_back(f.name);
    return n;
  }();
  return names;
}

Status checkPlanBuffers(const LaunchPlan &plan) {
  std::vector<BufferSpec> all = plan.buffers;
  all.insert(all.end(), plan.backwardBuffers.begin(), plan.backwardBuffers.end());
  for (const BufferSpec &b : all)
    if (!findField(b.name)) {
      std::string known;
      for (const std::string &n : workspaceFieldNames())
        known += (known.empty() ? "" : ", ") + n;
      return {StatusCode::Internal, "the launch plan uses workspace buffer '" + b.name +
                                        "', which is not a MuseParams field (known: " + known +
                                        ")"};
    }
  return Status::success();
}

Status launchGrid(const KernelLaunch &launch, const Shape &shape, unsigned grid[3]) {
  static const int64_t limit[3] = {INT32_MAX, 65535, 65535};
  for (int i = 0; i < 3; ++i) {
    int64_t g = launch.grid[i].eval(shape);
    if (g < 1 || g > limit[i])
      return invalid("kernel " + launch.kernel + ": grid dimension " + std::to_string(i) + " = " +
                     launch.grid[i].str() + " = " + std::to_string(g) + " for " +
                     shapeText(shape) + " is outside CUDA's range 1.." +
                     std::to_string(limit[i]) +
                     (i == 1 ? " (split the batch: B*H must be at most 65535)" : ""));
    grid[i] = unsigned(g);
  }
  return Status::success();
}

Status checkForwardArgs(const Spec &spec, const LaunchPlan &plan, const ForwardArgs &a) {
  const Shape &s = a.shape;
  if (s.B < 1 || s.H < 1 || s.Hkv < 1 || s.N < 1 || s.M < 1)
    return invalid("shape " + shapeText(s) + ": every dimension must be >= 1");
  if (s.N > INT32_MAX || s.M > INT32_MAX)
    return invalid("shape " + shapeText(s) + ": N and M must be at most " +
                   std::to_string(INT32_MAX));
  if (s.H % s.Hkv != 0)
    return invalid("shape " + shapeText(s) + ": H must be a multiple of Hkv");
  if (s.H / s.Hkv != spec.kvHeadsRatio)
    return invalid("shape " + shapeText(s) + ": H/Hkv = " + std::to_string(s.H / s.Hkv) +
                   " but spec '" + spec.name + "' was compiled for kv_heads_ratio " +
                   std::to_string(spec.kvHeadsRatio));
  if (s.B * s.H > 65535)
    return invalid("shape " + shapeText(s) + ": B*H = " + std::to_string(s.B * s.H) +
                   " exceeds 65535; split the batch into calls of at most 65535 heads");
  if (!a.q || !a.k || !a.v || !a.o)
    return invalid(std::string("null pointer for ") +
                   (!a.q ? "q" : !a.k ? "k" : !a.v ? "v" : "o") +
                   ": q, k, v and o must be device pointers (lse may be null)");
  for (auto [name, stride, dims] :
       {std::tuple{"q", a.qStride, "b, h, n"}, std::tuple{"k", a.kStride, "b, h, m"},
        std::tuple{"v", a.vStride, "b, h, m"}, std::tuple{"o", a.oStride, "b, h, n"}})
    if (Status st = checkStrides(name, stride, dims); !st.ok())
      return st;
  // Rows of o are written by different threads: they must not overlap.
  if (s.N > 1 && a.oStride[2] < spec.valueDim)
    return invalid("o row stride is " + std::to_string(a.oStride[2]) + " but rows of " +
                   std::to_string(spec.valueDim) + " floats would overlap; it must be >= " +
                   std::to_string(spec.valueDim));
  int64_t need = plan.workspaceBytes(s);
  if (need > 0) {
    if (!a.workspace)
      return invalid("workspace is null; this call needs " + std::to_string(need) +
                     " bytes (Attention::workspaceBytes)");
    if (a.workspaceBytes < need)
      return invalid("workspace has " + std::to_string(a.workspaceBytes) + " bytes; " +
                     shapeText(s) + " needs " + std::to_string(need) +
                     " (Attention::workspaceBytes)");
    if (reinterpret_cast<uintptr_t>(a.workspace) % 256 != 0)
      return invalid("workspace must be 256-byte aligned (cudaMalloc and PyTorch "
                     "allocations are)");
  }
  if (spec.causal) {
    if (s.N != s.M)
      return invalid("shape " + shapeText(s) + ": spec '" + spec.name +
                     "' is causal self-attention and needs N == M");
    const bool any = a.queryAssign || a.keyAssign || a.servedAssign;
    if (any && !(a.queryAssign && a.keyAssign && a.servedAssign))
      return invalid("causal partitions: pass queryAssign, keyAssign and servedAssign together "
                     "(or none)");
    // Every per-level launch, on the view it sees at each level.
    MuseParams base{}, view{};
    const int levels = causalLevelCount(s.N, spec.blockSize, spec.windowBlocks);
    for (const KernelLaunch &l : plan.launches) {
      if (l.view == LaunchView::Full)
        continue;
      for (int lv = 0; lv < levels; ++lv) {
        Shape vs;
        levelView(l.view, levelGeometry(s.N, spec.blockSize, spec.windowBlocks, lv), base, s,
                  spec.valueDim, view, vs);
        unsigned grid[3];
        if (Status st = launchGrid(l, vs, grid); !st.ok())
          return invalid(st.message + " (causal level " + std::to_string(lv) +
                         "; use a larger block_size or a smaller batch)");
      }
    }
  } else if (a.servedAssign) {
    return invalid("servedAssign is only for causal specs; spec '" + spec.name + "' is acausal");
  }
  if (!spec.causal && (a.queryAssign || a.keyAssign)) {
    for (const char *name : {"q_assign", "k_assign"}) {
      bool found = false;
      for (const BufferSpec &b : plan.buffers)
        found = found || b.name == name;
      if (!found)
        return invalid(std::string("partitions were requested but the plan of spec '") +
                       spec.name + "' has no " + name + " buffer");
    }
  }
  for (const KernelLaunch &l : plan.launches) {
    unsigned grid[3];
    if (l.view != LaunchView::Full)
      continue; // checked per level above
    if (Status st = launchGrid(l, s, grid); !st.ok())
      return st;
  }
  return Status::success();
}

Status fillParams(const Spec &spec, const LaunchPlan &plan, const ForwardArgs &a,
                  MuseParams &p) {
  return fillParams(spec, plan, a, p, plan.buffers.size(), 0);
}

Status fillParams(const Spec &spec, const LaunchPlan &plan, const ForwardArgs &a,
                  MuseParams &p, size_t gapAt, int64_t gapBytes) {
  if (Status st = checkForwardArgs(spec, plan, a); !st.ok())
    return st;
  std::memset(&p, 0, sizeof(p));
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.o = static_cast<float *>(a.o);
  p.lse = a.lse;
  p.q_sb = a.qStride[0]; p.q_sh = a.qStride[1]; p.q_sn = a.qStride[2];
  p.k_sb = a.kStride[0]; p.k_sh = a.kStride[1]; p.k_sm = a.kStride[2];
  p.v_sb = a.vStride[0]; p.v_sh = a.vStride[1]; p.v_sm = a.vStride[2];
  p.o_sb = a.oStride[0]; p.o_sh = a.oStride[1]; p.o_sn = a.oStride[2];
  p.B = int(a.shape.B);
  p.H = int(a.shape.H);
  p.Hkv = int(a.shape.Hkv);
  p.N = int(a.shape.N);
  p.M = int(a.shape.M);
  p.scale = float(spec.effectiveScale());
  p.seq_len = int(a.shape.N);
  p.batch = int(a.shape.B);
  if (spec.causal) {
    p.out_query = a.queryAssign;
    p.out_key = a.keyAssign;
    p.out_served = a.servedAssign;
  }
  std::vector<int64_t> offsets = plan.bufferOffsets(a.shape);
  for (size_t i = 0; i < plan.buffers.size(); ++i) {
    const WorkspaceField *f = findField(plan.buffers[i].name);
    if (!f)
      return checkPlanBuffers(plan);
    void *ptr = static_cast<char *>(a.workspace) + offsets[i] + (i >= gapAt ? gapBytes : 0);
    std::memcpy(reinterpret_cast<char *>(&p) + f->offset, &ptr, sizeof(ptr));
  }
  p.causal = spec.causal ? 1 : 0;
  if (a.oType == OutputType::Input && spec.dtype != DType::F32) {
    // o in the spec's dtype: the kernels accumulate into acc_o (contiguous;
    // null where far_field writes o itself) and round into the caller's o.
    p.out_o = a.o;
    p.out_o_sb = a.oStride[0]; p.out_o_sh = a.oStride[1]; p.out_o_sn = a.oStride[2];
    p.o = p.acc_o;
    p.o_sn = p.o ? spec.valueDim : 0;
    p.o_sh = a.shape.N * p.o_sn;
    p.o_sb = a.shape.H * p.o_sh;
  }
  return Status::success();
}

} // namespace muse
