//===- Outline.cpp - Stage ops into kernels, buffers and launches ---------===//
//
// Each function of scheduled stage ops becomes a muse.plan of the same name:
// the workspace buffers of templates/muse/params.cuh the stages use (in the
// MuseParams field order), one muse.kernel per extern "C" wrapper, and the
// launches in IR order - which muse-decompose makes the order of
// templates/README.md - with k-means expanded into init, (assign, update) x
// kmeans_iters.
//
//===----------------------------------------------------------------------===//
#include "muse/Dialect/Muse/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringSet.h"

namespace mlir::muse {
#define GEN_PASS_DEF_MUSEOUTLINE
#include "muse/Dialect/Muse/Transforms/Passes.h.inc"
} // namespace mlir::muse

using namespace mlir;
using namespace mlir::muse;
using ::muse::DimExpr;
using ::muse::Sym;

namespace {
DimExpr constant(int64_t v) { return DimExpr{Sym::One, 1, v}; }
DimExpr over(Sym s, int64_t div = 1) { return DimExpr{s, div, 1}; }

/// One workspace buffer: elements per head = per_n*N + per_m*M + fixed.
struct Buffer {
  const char *name;
  bool isFloat;
  Side side;
  int64_t perN, perM, fixed;
};

/// One kernel wrapper and where it is launched.
struct Launch {
  std::string kernel, instance, stage;
  int64_t threads;
  DimExpr grid[3];
  const char *view; // LaunchView name: "full", or per causal level "level", "segment", "served"
};

class PlanBuilder {
public:
  explicit PlanBuilder(SpecAttr spec, ScheduleAttr sched) : spec(spec), sched(sched) {}

  /// Causal order 0 with 16-bit inputs: the far field's tensor-core kernel
  /// merges each level's partial into o and run_lse itself
  /// (far_field<Cfg, true>), so no causal_merge runs. Order 1 keeps the
  /// merge: the dipole refines the partial after the far field.
  bool mergeInFarField() const {
    return spec.getCausal() && spec.getOrder() == 0 && !spec.getDtype().isF32();
  }

  /// The causal ops of ALGORITHM.md section 4 (muse-decompose's causal lowering).
  bool addCausal(Operation *op) {
    int64_t T = sched.getThreads();
    if (isa<WindowOp>(op)) {
      use({"run_lse"});
      // 16-bit inputs: the flash kernel's tile of min(128, S) queries (64 when
      // D + Dv > 128), a warp per 16 rows (WindowMmaTiles); f32: WindowTiles.
      int64_t S = spec.getBlockSize(), bq = std::min<int64_t>(32, S), threads = T;
      if (!spec.getDtype().isF32()) {
        bq = std::min<int64_t>(spec.getHeadDim() + spec.getValueDim() > 128 ? 64 : 128, S);
        threads = 32 * (bq / 16);
      }
      launch("muse_causal_window", "causal_window<MuseCfg>", threads,
             "causal near field: exact attention over the window", {over(Sym::N, bq), heads(true), constant(1)},
             "full");
      return true;
    }
    if (isa<AssignServedOp>(op)) {
      use({"q_centroids", "q_counts", "q_offsets", "q_perm", "served"});
      // 16-bit inputs: k-means' tensor-core assign, about 1024 queries a block
      // (any grid); f32: one thread a query.
      launch("muse_served_assign", "served_assign<MuseCfg>", 256,
             "served queries to their nearest non-empty segment centroid",
             {over(Sym::N, spec.getDtype().isF32() ? 256 : 1024), heads(true), constant(1)}, "served");
      launch("muse_served_sort", "served_sort<MuseCfg>", 1024, "served queries grouped by cluster",
             {constant(1), heads(true), constant(1)}, "served");
      return true;
    }
    if (isa<MergeOp>(op)) {
      // part_o only where causal_merge reads the level's partial from it.
      use({"row_lse", "run_lse", "served", "q_assign", "k_assign"});
      if (!mergeInFarField()) {
        use({"part_o"});
        launch("muse_causal_merge", "causal_merge<MuseCfg>", 128,
               "merge of the level's partial (log-sum-exp weights)",
               {over(Sym::N, 128), heads(true), constant(1)}, "level");
      }
      launch("muse_causal_export", "causal_export<MuseCfg>", 256,
             "the level's partitions, when requested", {over(Sym::N, 256), heads(true), constant(1)},
             "level");
      return true;
    }
    return false;
  }

  /// Appends the launches of one stage op and marks the buffers it touches.
  LogicalResult add(Operation *op) {
    if (addCausal(op))
      return success();
    if (auto km = dyn_cast<KMeansOp>(op))
      return addKMeans(km.getSide());
    if (auto cs = dyn_cast<ClusterSortOp>(op)) {
      bool q = cs.getSide() == Side::Query;
      use({q ? "q_counts" : "k_counts", q ? "q_assign" : "k_assign", q ? "q_offsets" : "k_offsets",
           q ? "q_perm" : "k_perm"});
      launch(std::string("muse_cluster_sort_") + (q ? "q" : "k"),
             std::string("cluster_sort<MuseCfg, ") + sideName(q) + ">", 1024,
             std::string("permutation by cluster (") + (q ? "queries" : "keys") + ")",
             {constant(1), heads(q), constant(1)});
      return success();
    }
    int64_t CQ = spec.getQueryClusters(), CK = spec.getKeyClusters(), T = sched.getThreads();
    if (isa<SummarizeOp>(op)) {
      use({"q_centroids", "k_offsets", "k_perm", "summaries"});
      // About 128 keys a block: small clusters (causal segments) share a block and
      // its centroid fragments; from M = 128·CK on, one cluster a block (the
      // kernel strides over key clusters, and blocks past CK return at once).
      launch("muse_summarize", "summarize<MuseCfg>", T,
             "stage 1: summaries of every (query cluster, key cluster)",
             {over(Sym::M, 128), heads(true), constant(1)});
      return success();
    }
    if (isa<SelectNearOp>(op)) {
      use({"summaries", "near"});
      launch("muse_select_near", "select_near<MuseCfg>", 32,
             "near field: top near_clusters key clusters per query cluster",
             {constant(CQ), heads(true), constant(1)});
      return success();
    }
    if (isa<FarFieldOp>(op)) {
      use({"q_centroids", "q_offsets", "q_perm", "k_offsets", "k_perm", "summaries", "row_lse"});
      if (spec.getNearClusters() > 0)
        use({"near"});
      if (mergeInFarField()) {
        use({"run_lse"});
        launch("muse_far_field", "far_field<MuseCfg, true>", T,
               "stage 2: far field and exact near field, merged into o (log-sum-exp weights)",
               {constant(CQ), heads(true), constant(1)});
        return success();
      }
      launch("muse_far_field", "far_field<MuseCfg>", T, "stage 2: far field and exact near field",
             {constant(CQ), heads(true), constant(1)});
      return success();
    }
    if (isa<DipoleOp>(op)) {
      use({"q_centroids", "q_offsets", "q_perm", "k_offsets", "k_perm", "summaries", "row_lse"});
      if (spec.getNearClusters() > 0)
        use({"near"});
      if (!spec.getDtype().isF32()) {
        // The tensor-core dipole streams every key cluster as one contiguous
        // run of centred rows (templates/muse/dipole.cuh, dipole_prep; where
        // the tiles fit no tensor-core warp grid the dipole runs in fp32 and
        // dipole_prep returns at once).
        use({"dipole_kv", "dipole_means"});
        launch("muse_dipole_prep", "dipole_prep<MuseCfg>", T,
               "order-1 key clusters: centred rows in cluster order",
               {constant(CK), heads(false), constant(1)});
      }
      launch("muse_dipole", "dipole<MuseCfg>", T, "order-1 correction (dipole)",
             {constant(CQ), heads(true), constant(1)});
      return success();
    }
    return op->emitOpError() << "cannot be outlined into a muse.plan (not a stage op)";
  }

  /// 16-bit specs deliver o in the input dtype when asked (params.cuh out_o):
  /// the last launch rounds the fp32 accumulator acc_o, kept wherever more
  /// than one kernel adds into o (causal: the window and every level; order
  /// 1: the far field and the dipole); acausal order 0 has far_field round o
  /// itself (emit.cuh outputInFarField, which emit_forward's template
  /// argument is checked against) and emit_forward is one block that returns
  /// at once.
  void addEmit() {
    if (spec.getDtype().isF32())
      return;
    const bool acc = spec.getCausal() || spec.getOrder() > 0;
    if (acc)
      use({"acc_o"});
    const std::string instance = std::string("emit_forward<MuseCfg, ") + (acc ? "true" : "false") + ">";
    const char *stage = "o rounded to the input dtype (when asked for)";
    if (acc)
      launch("muse_emit_o", instance, kEmitThreads, stage,
             {over(Sym::N, kEmitPerBlock / spec.getValueDim()), heads(true), constant(1)}, "full");
    else
      launch("muse_emit_o", instance, kEmitThreads, stage, {constant(1), constant(1), constant(1)}, "full");
  }

  /// Fills `plan` with buffers (MuseParams order), kernels and launches.
  void emit(PlanOp plan) {
    OpBuilder b = OpBuilder::atBlockEnd(&plan.getBody().front());
    Location loc = plan.getLoc();
    for (const Buffer &buf : allBuffers())
      if (used.contains(buf.name))
        b.create<BufferOp>(loc, buf.name, buf.isFloat ? Type(b.getF32Type()) : Type(b.getI32Type()), buf.side,
                           buf.perN, buf.perM, buf.fixed);
    llvm::StringSet<> declared;
    for (const Launch &l : launches)
      if (declared.insert(l.kernel).second)
        b.create<KernelOp>(loc, l.kernel, "muse::" + l.instance, l.threads, 0, l.stage,
                          kernelMinBlocks(b, spec, l.kernel, l.threads));
    MLIRContext *ctx = plan.getContext();
    for (const Launch &l : launches) {
      StringAttr view = llvm::StringRef(l.view) == "full" ? StringAttr() : b.getStringAttr(l.view);
      b.create<LaunchOp>(loc, l.kernel, DimAttr::fromDimExpr(ctx, l.grid[0]),
                         DimAttr::fromDimExpr(ctx, l.grid[1]), DimAttr::fromDimExpr(ctx, l.grid[2]),
                         view);
    }
  }

private:
  static const char *sideName(bool q) { return q ? "muse::Side::Query" : "muse::Side::Key"; }
  static DimExpr heads(bool q) { return over(q ? Sym::QHeads : Sym::KHeads); }

  /// params.cuh, in field order, with the size formulas of its comment.
  std::vector<Buffer> allBuffers() const {
    int64_t D = spec.getHeadDim(), CQ = spec.getQueryClusters(), CK = spec.getKeyClusters();
    int64_t E = std::max<int64_t>(spec.getNearClusters(), 1);
    if (spec.getCausal())
      return causalBuffers();
    return {{"q_centroids", true, Side::Query, 0, 0, CQ * D},
            {"k_centroids", true, Side::Key, 0, 0, CK * D},
            {"q_sums", true, Side::Query, 0, 0, CQ * D},
            {"k_sums", true, Side::Key, 0, 0, CK * D},
            {"q_counts", false, Side::Query, 0, 0, CQ},
            {"k_counts", false, Side::Key, 0, 0, CK},
            {"q_assign", false, Side::Query, 1, 0, 0},
            {"k_assign", false, Side::Key, 0, 1, 0},
            {"q_offsets", false, Side::Query, 0, 0, CQ + 1},
            {"k_offsets", false, Side::Key, 0, 0, CK + 1},
            {"q_perm", false, Side::Query, 1, 0, 0},
            {"k_perm", false, Side::Key, 0, 1, 0},
            {"summaries", true, Side::Query, 0, 0, CQ * CK * spec.getSummaryWidth()},
            {"near", false, Side::Query, 0, 0, CQ * E},
            {"row_lse", true, Side::Query, 1, 0, 0},
            {"dipole_kv", false, Side::Key, 0, dipoleRow() / 2, 0},
            {"dipole_means", true, Side::Key, 0, 0, CK * dipoleRow()},
            {"acc_o", true, Side::Query, spec.getValueDim(), 0, 0}};
  }

  /// Row width of dipole_kv and dipole_means: keys, then values.
  int64_t dipoleRow() const { return spec.getHeadDim() + spec.getValueDim(); }

  /// Causal plans reuse the acausal buffers for one level's segment view at a
  /// time. Level 0 has the most segments, at most ceil(N / 2S); a buffer of X
  /// elements per segment head therefore gets ceil(X / 2S) per position plus
  /// X, and per-position buffers (segments x segment length <= N + S) get
  /// N + S. Linear in N; the merge buffers are per position of the sequence.
  std::vector<Buffer> causalBuffers() const {
    int64_t D = spec.getHeadDim(), CQ = spec.getQueryClusters(), CK = spec.getKeyClusters();
    int64_t E = std::max<int64_t>(spec.getNearClusters(), 1), S = spec.getBlockSize();
    auto perSeg = [&](int64_t x) { return (x + 2 * S - 1) / (2 * S); };
    auto cl = [&](const char *name, bool isFloat, Side side, int64_t x) {
      return Buffer{name, isFloat, side, perSeg(x), 0, x};
    };
    int64_t sum = CQ * CK * spec.getSummaryWidth();
    return {cl("q_centroids", true, Side::Query, CQ * D),
            cl("k_centroids", true, Side::Key, CK * D),
            cl("q_sums", true, Side::Query, CQ * D),
            cl("k_sums", true, Side::Key, CK * D),
            cl("q_counts", false, Side::Query, CQ),
            cl("k_counts", false, Side::Key, CK),
            {"q_assign", false, Side::Query, 1, 0, S},
            {"k_assign", false, Side::Key, 1, 0, S},
            cl("q_offsets", false, Side::Query, CQ + 1),
            cl("k_offsets", false, Side::Key, CK + 1),
            {"q_perm", false, Side::Query, 1, 0, S},
            {"k_perm", false, Side::Key, 1, 0, S},
            cl("summaries", true, Side::Query, sum),
            cl("near", false, Side::Query, CQ * E),
            {"row_lse", true, Side::Query, 1, 0, S},
            {"dipole_kv", false, Side::Key, dipoleRow() / 2, 0, S * dipoleRow() / 2},
            cl("dipole_means", true, Side::Key, CK * dipoleRow()),
            {"part_o", true, Side::Query, spec.getValueDim(), 0, 0},
            {"run_lse", true, Side::Query, 1, 0, 0},
            {"served", false, Side::Query, 1, 0, S},
            {"acc_o", true, Side::Query, spec.getValueDim(), 0, 0}};
  }

  LogicalResult addKMeans(Side side) {
    bool q = side == Side::Query;
    const char *s = q ? "q" : "k";
    std::string who = q ? "queries" : "keys";
    std::string tmpl = std::string("<MuseCfg, ") + sideName(q) + ">";
    int64_t C = q ? spec.getQueryClusters() : spec.getKeyClusters();
    use({q ? "q_centroids" : "k_centroids", q ? "q_sums" : "k_sums", q ? "q_counts" : "k_counts",
         q ? "q_assign" : "k_assign"});
    launch(std::string("muse_kmeans_init_") + s, "kmeans_init" + tmpl, 256,
           "k-means init (" + who + ")",
           {constant((C * spec.getHeadDim() + 255) / 256), heads(q), constant(1)});
    // About 1024 points a block (the kernel takes any grid): its centroid
    // tiles and member-sum flush are paid once per eight 128-point chunks.
    for (int64_t t = 0; t < spec.getKmeansIters(); ++t) {
      launch(std::string("muse_kmeans_assign_") + s, "kmeans_assign" + tmpl, 256,
             "k-means assign (" + who + ")", {over(q ? Sym::N : Sym::M, 1024), heads(q), constant(1)});
      launch(std::string("muse_kmeans_update_") + s, "kmeans_update" + tmpl, spec.getHeadDim(),
             "k-means update (" + who + ")", {constant(C), heads(q), constant(1)});
    }
    return success();
  }

  void use(std::initializer_list<const char *> names) {
    for (const char *n : names)
      used.insert(n);
  }
  void launch(std::string kernel, std::string instance, int64_t threads, std::string stage,
              std::initializer_list<DimExpr> grid, const char *view = nullptr) {
    // Every stage of a causal spec that is not one of its own ops runs on
    // segments: stage 2 on the served view, the rest on L's.
    if (!view)
      view = !spec.getCausal() ? "full"
             : (kernel == "muse_far_field" || kernel == "muse_dipole") ? "served"
                                                                       : "segment";
    Launch l{std::move(kernel), std::move(instance), std::move(stage), threads, {}, view};
    std::copy(grid.begin(), grid.end(), l.grid);
    launches.push_back(std::move(l));
  }

  SpecAttr spec;
  ScheduleAttr sched;
  llvm::StringSet<> used;
  std::vector<Launch> launches;
};

/// The spec and schedule every stage op of `func` agrees on, or an error.
LogicalResult outline(func::FuncOp func) {
  SpecAttr spec;
  ScheduleAttr sched;
  SmallVector<Operation *> stages;
  for (Operation &op : func.getBody().getOps()) {
    if (isa<AttentionOp>(op))
      return op.emitOpError() << "must be decomposed before outlining (run muse-decompose first)";
    SpecAttr opSpec = op.getAttrOfType<SpecAttr>("spec");
    if (!opSpec)
      continue;
    if (spec && opSpec != spec)
      return op.emitOpError() << "has a different spec than the other stages of @"
                              << func.getSymName() << "; one plan has one spec";
    spec = opSpec;
    if (auto s = op.getAttrOfType<ScheduleAttr>("schedule")) {
      if (sched && s != sched)
        return op.emitOpError() << "has a different schedule than the other stages of @"
                                << func.getSymName();
      sched = s;
    } else if (isa<SummarizeOp, FarFieldOp, DipoleOp, WindowOp>(op)) {
      return op.emitOpError() << "has no schedule (run muse-schedule before muse-outline)";
    }
    stages.push_back(&op);
  }
  if (!spec)
    return success(); // not a muse function: left alone
  if (!sched)
    return func.emitOpError() << "has no scheduled stage (summarize, far_field or dipole) to outline";
  PlanBuilder builder(spec, sched);
  for (Operation *op : stages)
    if (failed(builder.add(op)))
      return failure();
  builder.addEmit();
  OpBuilder b(func);
  auto plan = b.create<PlanOp>(func.getLoc(), func.getSymName(), spec, sched);
  builder.emit(plan);
  func.erase();
  return success();
}

struct MuseOutline : public mlir::muse::impl::MuseOutlineBase<MuseOutline> {
  void runOnOperation() override {
    SmallVector<func::FuncOp> funcs(getOperation().getOps<func::FuncOp>());
    for (func::FuncOp func : funcs)
      if (failed(outline(func)))
        return signalPassFailure();
  }
};
} // namespace
