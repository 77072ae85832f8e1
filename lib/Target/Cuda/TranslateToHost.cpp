//===- TranslateToHost.cpp - LaunchPlan and C++ launcher of a muse.plan ---===//
#include "muse/Compiler/Compiler.h"
#include "muse/Target/Cuda/Translate.h"

#include <algorithm>
#include <cctype>
#include <sstream>

using namespace mlir;
using namespace mlir::muse;
using ::muse::BufferSpec;
using ::muse::DimExpr;
using ::muse::KernelLaunch;
using ::muse::LaunchPlan;
using ::muse::LaunchView;
using ::muse::Sym;

static FailureOr<::muse::LaunchPlan> buildOnePlan(PlanOp plan);

FailureOr<::muse::LaunchPlan> (::muse::buildLaunchPlan)(PlanOp plan) {
  FailureOr<LaunchPlan> out = buildOnePlan(plan);
  if (failed(out))
    return failure();
  if (PlanOp backward = findBackwardPlan(plan)) {
    FailureOr<LaunchPlan> bwd = buildOnePlan(backward);
    if (failed(bwd))
      return failure();
    out->backwardBuffers = std::move(bwd->buffers);
    out->backwardLaunches = std::move(bwd->launches);
  }
  return out;
}

static FailureOr<::muse::LaunchPlan> buildOnePlan(PlanOp plan) {
  LaunchPlan out;
  for (BufferOp buf : plan.getBody().getOps<BufferOp>()) {
    BufferSpec b;
    b.name = buf.getSymName().str();
    b.heads = buf.getHeads() == Side::Query ? Sym::QHeads : Sym::KHeads;
    b.perN = static_cast<int64_t>(buf.getPerN());
    b.perM = static_cast<int64_t>(buf.getPerM());
    b.fixed = static_cast<int64_t>(buf.getFixed());
    b.elemBytes = (buf.getElemType().getIntOrFloatBitWidth() + 7) / 8;
    out.buffers.push_back(b);
  }
  for (LaunchOp launch : plan.getBody().getOps<LaunchOp>()) {
    auto kernel = SymbolTable::lookupNearestSymbolFrom<KernelOp>(launch, launch.getKernelAttr());
    if (!kernel)
      return launch.emitOpError() << "launches an unknown kernel";
    KernelLaunch l;
    l.kernel = kernel.getSymName().str();
    l.grid[0] = launch.getGridX().toDimExpr();
    l.grid[1] = launch.getGridY().toDimExpr();
    l.grid[2] = launch.getGridZ().toDimExpr();
    l.block = static_cast<int>(kernel.getThreads());
    l.sharedBytes = static_cast<int>(kernel.getSharedBytes());
    l.comment = kernel.getStage().str();
    if (auto view = launch.getView()) {
      bool known = false;
      for (auto v : {::muse::LaunchView::Full, ::muse::LaunchView::Level,
                     ::muse::LaunchView::Segment, ::muse::LaunchView::Served})
        if (*view == ::muse::viewName(v)) {
          l.view = v;
          known = true;
        }
      if (!known)
        return launch.emitOpError() << "has an unknown view \"" << *view << "\"";
    }
    out.launches.push_back(l);
  }
  if (out.launches.empty())
    return plan.emitOpError() << "has no launches";
  return out;
}

std::string (::muse::launcherName)(llvm::StringRef specName) {
  std::string id = "muse_";
  for (char c : specName)
    id += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return id;
}

namespace {
/// The names the launch grids of one view are written over: the real shape,
/// or the segment view's (B -> B * segments, N = M = segment length).
struct ShapeNames {
  const char *B = "B", *N = "N", *M = "M";
};

/// A DimExpr as a C++ expression over the locals of `names` and H, Hkv.
std::string cExpr(const DimExpr &e, const ShapeNames &names = {}) {
  if (e.sym == Sym::One)
    return std::to_string(e.mul);
  std::string s = e.sym == Sym::QHeads   ? std::string(names.B) + " * H"
                  : e.sym == Sym::KHeads ? std::string(names.B) + " * Hkv"
                  : e.sym == Sym::N      ? names.N
                                         : names.M;
  if (e.div != 1)
    s = "muse_ceil_div(" + s + ", " + std::to_string(e.div) + ")";
  else if (e.mul != 1)
    s = "(" + s + ")";
  if (e.mul != 1)
    s += " * " + std::to_string(e.mul);
  return s;
}

/// Bytes of one buffer as a C++ expression.
std::string cBytes(const BufferSpec &b) {
  std::ostringstream os;
  os << b.elemBytes << "ull * " << (b.heads == Sym::QHeads ? "(B * H)" : "(B * Hkv)") << " * (";
  bool any = false;
  auto term = [&](int64_t k, const char *sym) {
    if (!k)
      return;
    os << (any ? " + " : "") << (k == 1 ? "" : std::to_string(k) + " * ") << sym;
    any = true;
  };
  term(b.perN, "N");
  term(b.perM, "M");
  if (b.fixed || !any)
    os << (any ? " + " : "") << b.fixed;
  os << ")";
  return os.str();
}

bool hasLevelLaunches(const std::vector<KernelLaunch> &launches) {
  for (const KernelLaunch &l : launches)
    if (l.view != LaunchView::Full)
      return true;
  return false;
}

/// Dv of a causal plan: part_o is f32 [B*H, N, Dv] (templates/muse/params.cuh).
int64_t partialValueDim(const LaunchPlan &plan) {
  for (const BufferSpec &b : plan.buffers)
    if (b.name == "part_o" && b.perN > 0 && b.perM == 0 && b.fixed == 0)
      return b.perN;
  return 0;
}

const BufferSpec *findBuffer(const std::vector<BufferSpec> &buffers, const char *name) {
  for (const BufferSpec &b : buffers)
    if (b.name == name)
      return &b;
  return nullptr;
}

bool launches(const std::vector<KernelLaunch> &launches, const char *kernel) {
  for (const KernelLaunch &l : launches)
    if (l.kernel == kernel)
      return true;
  return false;
}

/// 16-bit plans end in emit launches (templates/muse/emit.cuh): a caller that
/// sets out_o (forward) or out_dq, out_dk, out_dv (backward) and their
/// strides gets those outputs in the inputs' dtype, accumulated in the
/// workspace's acc_* buffers (contiguous), as the runtime does
/// (Params.cpp, BackwardParams.cpp).
void emitOutputRedirect(std::ostream &os, const std::vector<BufferSpec> &buffers, bool backward) {
  const char *rows[] = {"N", "M", "M"};
  const char *heads[] = {"H", "Hkv", "Hkv"};
  const char *fields[] = {backward ? "dq" : "o", "dk", "dv"};
  const char *rowStride[] = {"n", "m", "m"};
  os << "  // Outputs in the inputs' dtype when the caller set p.out_" << fields[0]
     << " (see params.cuh).\n"
     << "  if (p.out_" << fields[0] << ") {\n";
  for (int i = 0; i < (backward ? 3 : 1); ++i) {
    const std::string f = fields[i], acc = "acc_" + f;
    const BufferSpec *b = findBuffer(buffers, acc.c_str());
    const int64_t width = b ? (b->perN ? b->perN : b->perM) : 0;
    if (!b) { // written by its kernel straight into out_* (no accumulator)
      os << "    p." << f << " = 0;\n    p." << f << "_sb = p." << f << "_sh = p." << f << "_s"
         << rowStride[i] << " = 0;\n";
      continue;
    }
    os << "    p." << f << " = p." << acc << ";\n"
       << "    p." << f << "_s" << rowStride[i] << " = " << width << ";\n"
       << "    p." << f << "_sh = " << rows[i] << " * " << width << ";\n"
       << "    p." << f << "_sb = " << heads[i] << " * " << rows[i] << " * " << width << ";\n";
  }
  os << "  }\n";
}

void emitBind(std::ostream &os, const std::vector<BufferSpec> &buffers) {
  for (const BufferSpec &b : buffers)
    os << "  p." << b.name << " = (decltype(p." << b.name << "))(workspace + at);\n"
       << "  at += muse_align256(" << cBytes(b) << ");\n";
}

/// The causal save area (every level's partitions, written by the forward's
/// causal_export launches and read by the backward's restore launches) right
/// where the runtime places it: after the forward's buffers, before the
/// backward's (LoadedAttention.cpp forward, BackwardParams.cpp).
void emitSaveBind(std::ostream &os) {
  os << "  // The causal save area: every level's partitions (causal_export writes them, the\n"
     << "  // backward restores them), after the forward's buffers.\n"
     << "  muse_bind_causal_save(&p, workspace + at, B, H, Hkv, N, block_size, window_blocks);\n"
     << "  at += muse_causal_save_bytes(B, H, Hkv, N, block_size, window_blocks);\n";
}

/// One launch; `args` names the kernel argument array (of the MuseParams of
/// its view), `names` the shape its grid is computed over.
void emitLaunch(std::ostream &os, const KernelLaunch &l, const std::string &indent,
                const std::string &args, const ShapeNames &names) {
  os << indent << "// " << l.comment;
  if (l.view != LaunchView::Full)
    os << " [view " << ::muse::viewName(l.view) << "]";
  os << "\n"
     << indent << "if ((r = cuModuleGetFunction(&f, module, \"" << l.kernel
     << "\")) != CUDA_SUCCESS)\n"
     << indent << "  return r;\n"
     << indent << "if ((r = cuLaunchKernel(f, (unsigned)(" << cExpr(l.grid[0], names)
     << "), (unsigned)(" << cExpr(l.grid[1], names) << "), (unsigned)(" << cExpr(l.grid[2], names)
     << "), " << l.block << ", 1, 1, " << l.sharedBytes << ", stream, " << args
     << ", NULL)) != CUDA_SUCCESS)\n"
     << indent << "  return r;\n";
}

/// The launch sequence as the runtime runs it (LoadedAttention::forward):
/// full launches once; every run of per-level launches (level, segment,
/// served views) once per causal level, level 0 first, each launch on the
/// params and grid of its view (CausalLevels.cpp levelView).
void emitLaunches(std::ostream &os, const std::vector<KernelLaunch> &launches, int64_t valueDim) {
  os << "\n  CUfunction f;\n  CUresult r;\n  void *args[] = {&p};\n";
  const bool causal = hasLevelLaunches(launches);
  // A plan without part_o merges in the far field (far_field<Cfg, true>);
  // one that launches causal_merge reads the partial from part_o.
  const bool merges = std::any_of(launches.begin(), launches.end(), [](const KernelLaunch &l) {
    return l.kernel == "muse_causal_merge";
  });
  if (causal)
    os << "  const int levels = muse_level_count(N, block_size, window_blocks);\n";
  for (size_t i = 0; i < launches.size();) {
    if (launches[i].view == LaunchView::Full) {
      emitLaunch(os, launches[i], "  ", "args", {});
      ++i;
      continue;
    }
    size_t end = i;
    bool segment = false, served = false;
    for (; end < launches.size() && launches[end].view != LaunchView::Full; ++end) {
      segment = segment || launches[end].view != LaunchView::Level;
      served = served || launches[end].view == LaunchView::Served;
    }
    os << "\n  // Per-level launches: all of them at level 0, then level 1, ... (ALGORITHM.md §4).\n"
       << "  for (int level = 0; level < levels; ++level) {\n"
       << "    const muse_level g = muse_level_geometry(N, block_size, window_blocks, level);\n"
       << "    // view \"level\": the real shape with the level's fields set.\n"
       << "    MuseParams level_p = p;\n"
       << "    level_p.seg_level = level;\n"
       << "    level_p.level_segs = (int)g.segments;\n"
       << "    level_p.seg_stride = g.stride;\n"
       << "    void *level_args[] = {&level_p};\n"
       << "    (void)level_args;\n";
    if (segment)
      os << "    // view \"segment\": every segment is a batch entry of its own, N = M = its length.\n"
         << "    const long long seg_B = B * g.segments, seg_N = g.length, seg_M = g.length;\n"
         << "    MuseParams segment_p = level_p;\n"
         << "    segment_p.seg_count = (int)g.segments;\n"
         << "    segment_p.B = (int)seg_B;\n"
         << "    segment_p.N = segment_p.M = (int)g.length;\n"
         << "    void *segment_args[] = {&segment_p};\n";
    if (served && valueDim < 1 && merges)
      os << "#error \"muse: a causal plan that launches causal_merge needs a part_o buffer\"\n";
    if (served) {
      if (valueDim < 1)
        os << "    // view \"served\": query rows of the served range; no part_o: the far field\n"
           << "    // merges its partial into the call's o and lse (merge_o, merge_lse).\n";
      else
        os << "    // view \"served\": query rows of the served range; the level's partial o, no lse\n"
           << "    // (merge_o, merge_lse: the call's, for a launch that merges its partial itself).\n";
      os << "    MuseParams served_p = segment_p;\n"
         << "    served_p.seg_qbase = g.served_base;\n"
         << "    served_p.merge_o = p.o;\n"
         << "    served_p.merge_o_sb = p.o_sb;\n"
         << "    served_p.merge_o_sh = p.o_sh;\n"
         << "    served_p.merge_o_sn = p.o_sn;\n"
         << "    served_p.merge_lse = p.lse;\n";
      if (valueDim < 1)
        os << "    served_p.o = NULL;\n";
      else
        os << "    served_p.o = p.part_o;\n"
           << "    served_p.o_sn = " << valueDim << ";\n"
           << "    served_p.o_sh = N * " << valueDim << ";\n"
           << "    served_p.o_sb = H * N * " << valueDim << ";\n";
      os << "    served_p.lse = NULL;\n"
         << "    void *served_args[] = {&served_p};\n";
    }
    if (segment)
      os << "    (void)seg_N;\n    (void)seg_M;\n    (void)segment_args;\n";
    ShapeNames segmentNames;
    segmentNames.B = "seg_B";
    segmentNames.N = "seg_N";
    segmentNames.M = "seg_M";
    for (size_t j = i; j < end; ++j) {
      const KernelLaunch &l = launches[j];
      if (l.view == LaunchView::Level)
        emitLaunch(os, l, "    ", "level_args", {});
      else
        emitLaunch(os, l, "    ", l.view == LaunchView::Segment ? "segment_args" : "served_args",
                   segmentNames);
    }
    os << "  }\n\n";
    i = end;
  }
  os << "  return CUDA_SUCCESS;\n}\n";
}
} // namespace

std::string (::muse::printHostLauncher)(const LaunchPlan &plan, const std::string &name) {
  std::ostringstream os;
  // Causal plans take the spec's block size and window; their forward saves
  // every level's partitions for the backward, so both sizes include the save.
  const bool causal =
      hasLevelLaunches(plan.launches) || hasLevelLaunches(plan.backwardLaunches);
  const int64_t valueDim = partialValueDim(plan);
  os << "// Host launcher " << name << ", generated by muse " << ::muse::kGeneratorVersion
     << "; do not edit.\n"
     << "// The runtime interprets the same launch plan; this is it as C++ (CUDA driver API).\n"
     << "#include <cuda.h>\n#include <stddef.h>\n\n#include \"muse/params.cuh\"\n\n"
     << "static inline size_t muse_align256(size_t n) { return (n + 255) / 256 * 256; }\n"
     << "static inline long long muse_ceil_div(long long a, long long b) { return (a + b - 1) / b; }\n\n";

  if (causal)
    os << "// Causal far-field levels (lib/Runtime/CausalLevels.cpp): S = causal.block_size,\n"
       << "// w = causal.window_blocks of the spec. Level l has segments of 2^l S positions,\n"
       << "// 2^(l+1) S apart; segment a serves the queries from a 2^(l+1) S + (2^l + w - 1) S.\n"
       << "typedef struct {\n"
       << "  long long segments;   // segments that serve at least one query\n"
       << "  long long length;     // 2^l S\n"
       << "  long long stride;     // 2^(l+1) S\n"
       << "  long long served_base; // (2^l + w - 1) S\n"
       << "} muse_level;\n\n"
       << "// The bit length of max(0, ceil(N/S) - w).\n"
       << "static inline int muse_level_count(long long N, long long S, long long w) {\n"
       << "  long long max_p = muse_ceil_div(N, S) - w;\n"
       << "  int levels = 0;\n"
       << "  for (; max_p > 0; max_p >>= 1)\n"
       << "    ++levels;\n"
       << "  return levels;\n"
       << "}\n\n"
       << "static inline muse_level muse_level_geometry(long long N, long long S, long long w, "
          "int level) {\n"
       << "  muse_level g;\n"
       << "  const long long room = muse_ceil_div(N, S) - (1LL << level) - w + 1;\n"
       << "  g.length = S << level;\n"
       << "  g.stride = S << (level + 1);\n"
       << "  g.served_base = ((1LL << level) + w - 1) * S;\n"
       << "  g.segments = room > 0 ? muse_ceil_div(room, 2LL << level) : 0;\n"
       << "  return g;\n"
       << "}\n\n"
       << "// The forward's saved partitions (templates/README.md, \"Backward (causal)\"): i32\n"
       << "// [levels, B*H, N] member, [levels, B*Hkv, N] key and [levels, B*H, N] served\n"
       << "// clusters in one area, 256-byte aligned as a whole so what follows stays aligned.\n"
       << "static inline size_t muse_causal_save_bytes(long long B, long long H, long long Hkv, "
          "long long N, long long S, long long w) {\n"
       << "  const long long levels = muse_level_count(N, S, w);\n"
       << "  return muse_align256(4ull * levels * N * (2 * B * H + B * Hkv));\n"
       << "}\n\n"
       << "// Points out_query, out_key and out_served at the save area starting at `save`.\n"
       << "static inline void muse_bind_causal_save(MuseParams *p, CUdeviceptr save, long long B, "
          "long long H, long long Hkv, long long N, long long S, long long w) {\n"
       << "  const long long levels = muse_level_count(N, S, w);\n"
       << "  p->out_query = (int *)save;\n"
       << "  p->out_key = p->out_query + levels * B * H * N;\n"
       << "  p->out_served = p->out_key + levels * B * Hkv * N;\n"
       << "}\n\n";

  const char *levelArgs = ", long long block_size, long long window_blocks";
  os << "// Workspace bytes for one call: every buffer 256-byte aligned, in this order";
  if (causal)
    os << ",\n// then the causal save area";
  os << ".\n"
     << "size_t " << name << "_workspace_bytes(long long B, long long H, long long Hkv, long long N, "
     << "long long M" << (causal ? levelArgs : "") << ") {\n  (void)N; (void)M;\n"
     << "  size_t bytes = 0;\n";
  for (const BufferSpec &b : plan.buffers)
    os << "  bytes += muse_align256(" << cBytes(b) << "); // " << b.name << "\n";
  if (causal)
    os << "  bytes += muse_causal_save_bytes(B, H, Hkv, N, block_size, window_blocks); // causal "
          "save\n";
  os << "  return bytes;\n}\n\n";
  os << "// p: q, k, v, o, lse, strides, B, H, Hkv, N, M and scale filled by the caller";
  if (causal)
    os << "\n// (causal: also seq_len = N and batch = B); block_size, window_blocks: the spec's\n"
       << "// causal.block_size and causal.window_blocks. Causal: out_query, out_key and out_served\n"
       << "// are pointed at the workspace's save area, which holds every level's partitions\n"
       << "// afterwards (for " << name << "_backward, or to copy out)";
  os << ";\n// workspace: " << name << "_workspace_bytes(...) bytes of device memory.\n"
     << "CUresult " << name << "_launch(CUmodule module, CUstream stream, MuseParams p, "
     << "CUdeviceptr workspace" << (causal ? levelArgs : "") << ") {\n"
     << "  const long long B = p.B, H = p.H, Hkv = p.Hkv, N = p.N, M = p.M;\n"
     << "  (void)N; (void)M;\n"
     << "  size_t at = 0;\n";
  // The persistent buffers, the causal save area, then the transient ones
  // (acc_o), whose bytes a backward's scratch reuses (LaunchPlan::isTransient).
  const std::vector<BufferSpec> persistent(plan.buffers.begin(), plan.buffers.begin() + plan.firstTransient());
  const std::vector<BufferSpec> transient(plan.buffers.begin() + plan.firstTransient(), plan.buffers.end());
  emitBind(os, persistent);
  if (causal)
    emitSaveBind(os);
  emitBind(os, transient);
  os << "  p.causal = " << (causal ? 1 : 0) << ";\n";
  if (launches(plan.launches, "muse_emit_o"))
    emitOutputRedirect(os, plan.buffers, false);
  emitLaunches(os, plan.launches, valueDim);

  if (!plan.hasBackward())
    return os.str();
  os << "\n// Backward: the forward's buffers (still holding what " << name << "_launch\n"
     << "// wrote, at the same offsets)"
     << (causal ? " and its causal save area, then the backward's,\n// every one"
                : ", then the backward's, every one")
     << " 256-byte aligned.\n"
     << "size_t " << name << "_backward_workspace_bytes(long long B, long long H, long long Hkv, "
     << "long long N, long long M" << (causal ? levelArgs : "") << ") {\n"
     << "  size_t bytes = " << name << "_workspace_bytes(B, H, Hkv, N, M"
     << (causal ? ", block_size, window_blocks" : "") << ");\n";
  if (!transient.empty()) {
    os << "  // The backward's scratch reuses the transient buffers' bytes.\n"
       << "  size_t transient = 0, scratch = 0;\n";
    for (const BufferSpec &b : transient)
      os << "  transient += muse_align256(" << cBytes(b) << "); // " << b.name << "\n";
    for (const BufferSpec &b : plan.backwardBuffers)
      os << "  scratch += muse_align256(" << cBytes(b) << "); // " << b.name << "\n";
    os << "  bytes += (scratch > transient ? scratch : transient) - transient;\n";
  } else {
    for (const BufferSpec &b : plan.backwardBuffers)
      os << "  bytes += muse_align256(" << cBytes(b) << "); // " << b.name << "\n";
  }
  os << "  return bytes;\n}\n\n"
     << "// p: as for " << name << "_launch (same q, k, v, lse, o strides and shape) but\n"
     << "// o_in (the forward's o in the inputs' dtype) for o, plus dout (that dtype), dlse,\n"
     << "// dq, dk, dv and their strides; workspace: the one the forward ran on, of\n"
     << "// " << name << "_backward_workspace_bytes(...) bytes.\n"
     << "CUresult " << name << "_backward(CUmodule module, CUstream stream, MuseParams p, "
     << "CUdeviceptr workspace" << (causal ? levelArgs : "") << ") {\n"
     << "  const long long B = p.B, H = p.H, Hkv = p.Hkv, N = p.N, M = p.M;\n"
     << "  (void)N; (void)M;\n"
     << "  size_t at = 0;\n"
     << "  // The forward's buffers.\n";
  emitBind(os, persistent);
  if (causal)
    emitSaveBind(os);
  os << "  // The backward's own.\n";
  emitBind(os, plan.backwardBuffers);
  os << "  p.causal = " << (causal ? 1 : 0) << ";\n";
  if (launches(plan.backwardLaunches, "muse_emit_dkdv"))
    emitOutputRedirect(os, plan.backwardBuffers, true);
  emitLaunches(os, plan.backwardLaunches, valueDim);
  return os.str();
}
