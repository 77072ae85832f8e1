//===- Backward.cpp - Derive, decompose and outline the backward ---------===//
//
// The backward is a second function next to the forward one, lowered to a
// second muse.plan in the same module: one CUDA translation unit (one cubin)
// holds the kernels of both, and the runtime gets a forward and a backward
// launch plan. The backward kernels read the forward's workspace (partitions,
// centroids, summaries, near lists, row lse): its own plan declares only its
// scratch buffers, which the runtime lays out after the forward's.
//
//===----------------------------------------------------------------------===//
#include "muse/Dialect/Muse/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/StringSet.h"

#include <algorithm>
#include <cstring>

namespace mlir::muse {
#define GEN_PASS_DEF_MUSEDERIVEBACKWARD
#define GEN_PASS_DEF_MUSEDECOMPOSEBACKWARD
#define GEN_PASS_DEF_MUSEOUTLINEBACKWARD
#include "muse/Dialect/Muse/Transforms/Passes.h.inc"
} // namespace mlir::muse

using namespace mlir;
using namespace mlir::muse;
using ::muse::DimExpr;
using ::muse::Sym;

namespace {
constexpr int64_t kDyn = ShapedType::kDynamic;
/// Threads of backward_rows and backward_keys (templates/muse/backward_common.cuh
/// kBwdThreads).
constexpr int64_t kBwdThreads = 128;
constexpr int64_t kBwdWarps = kBwdThreads / 32;
/// Rows one block of backward_window_dq (queries) or _dkdv (keys) owns and
/// its threads: 16-bit inputs take the tensor-core kernels, a warp per 16
/// rows, min(128, S) queries and min(64, S) keys (32 of either when
/// D + Dv > 128; backward_window_mma.cuh BwdWindowMmaTiles::DQ_ROWS,
/// DKDV_ROWS); f32 the fp32 tiles of backward_window.cuh
/// (BwdWindowTiles::WQ, kBwdThreads).
int64_t windowRows(SpecAttr spec, bool dq) {
  const bool wide = spec.getHeadDim() + spec.getValueDim() > 128;
  if (spec.getDtype().isF32())
    return wide ? 16 : 32;
  return std::min<int64_t>(wide ? 32 : (dq ? 128 : 64), spec.getBlockSize());
}
int64_t windowThreads(SpecAttr spec, bool dq) {
  return spec.getDtype().isF32() ? kBwdThreads : 32 * (windowRows(spec, dq) / 16);
}
/// Grid x of backward_rows: a block per query cluster (shared tiles of its
/// members; backward_rows.cuh rowsTiled, rowsTiledMma, rowsDipole).
DimExpr rowsGrid(SpecAttr spec) { return DimExpr{Sym::One, 1, spec.getQueryClusters()}; }
/// Threads of backward_pairs (templates/muse/backward_pairs.cuh kPairThreads).
constexpr int64_t kPairThreads = 256;
/// Order 0 on the tensor cores (16-bit inputs, D and Dv multiples of 16,
/// D + Dv <= 128: backward_rows.cuh RowMmaTiles::usable): backward_rows forms
/// the stage-1 pair sums from the P and G it holds (rowsTiledMma<Cfg, true>),
/// so the plan has no backward_pairs launch and no bwd_pg scratch.
bool fusedPairs(SpecAttr spec) {
  const int64_t D = spec.getHeadDim(), Dv = spec.getValueDim();
  return spec.getOrder() == 0 && !spec.getDtype().isF32() && D % 16 == 0 && Dv % 16 == 0 && D + Dv <= 128;
}
/// Whether the plan launches `kernel` (backward_pairs only where not fused).
bool launched(SpecAttr spec, StringRef kernel) { return !fusedPairs(spec) || kernel != "muse_backward_pairs"; }
const char *rowsInstance(SpecAttr spec) {
  return fusedPairs(spec) ? "muse::backward_rows<MuseCfg, true>" : "muse::backward_rows<MuseCfg>";
}

/// Gradients in the input dtype (params.cuh out_dq, templates/muse/emit.cuh),
/// 16-bit specs only: acausal order 0 without near field on the tensor cores
/// (backward_keys.cuh KeyMmaTiles::usable: D + Dv <= 128), backward_keys
/// rounds dk, dv itself where a kv head serves one query head (emit.cuh
/// keysWriteOutput; GQA groups add their heads in acc_dk, acc_dv).
bool keysWriteOutput(SpecAttr spec) {
  const int64_t D = spec.getHeadDim(), Dv = spec.getValueDim();
  return !spec.getCausal() && spec.getOrder() == 0 && spec.getNearClusters() == 0 && !spec.getDtype().isF32() &&
         D % 16 == 0 && Dv % 16 == 0 && D + Dv <= 128;
}
/// The fp32 accumulators of the gradients a 16-bit plan keeps: acc_dq always
/// (the rows' dL/dr; backward_centroid or emit_dq rounds it), acc_dk and acc_dv
/// unless backward_keys writes dk, dv itself for groups of one head.
/// emit_dkdv's template argument says whether they exist (checked there).
bool keepsKVAccumulators(SpecAttr spec) { return !keysWriteOutput(spec) || spec.getKvHeadsRatio() > 1; }
void addGradientAccumulators(OpBuilder &pb, Location loc, SpecAttr spec) {
  if (spec.getDtype().isF32())
    return;
  Type f32 = pb.getF32Type();
  pb.create<BufferOp>(loc, "acc_dq", f32, Side::Query, spec.getHeadDim(), 0, 0);
  if (keepsKVAccumulators(spec)) {
    pb.create<BufferOp>(loc, "acc_dk", f32, Side::Key, 0, spec.getHeadDim(), 0);
    pb.create<BufferOp>(loc, "acc_dv", f32, Side::Key, 0, spec.getValueDim(), 0);
  }
}

RankedTensorType f32Tensor(MLIRContext *ctx, ArrayRef<int64_t> dims) {
  return RankedTensorType::get(dims, Float32Type::get(ctx));
}

/// The same shape as `t` with f32 elements (a gradient of an input).
Type gradType(Type t) {
  auto r = cast<RankedTensorType>(t);
  return RankedTensorType::get(r.getShape(), Float32Type::get(t.getContext()));
}

struct MuseDeriveBackward
    : public mlir::muse::impl::MuseDeriveBackwardBase<MuseDeriveBackward> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<std::pair<func::FuncOp, AttentionOp>> todo;
    for (func::FuncOp func : module.getOps<func::FuncOp>())
      func.walk([&](AttentionOp op) { todo.emplace_back(func, op); });
    for (auto [func, op] : todo) {
      std::string name = (func.getSymName() + "_backward").str();
      if (module.lookupSymbol(name)) {
        op.emitOpError() << "cannot derive its backward: @" << name << " already exists";
        return signalPassFailure();
      }
      OpBuilder b(module.getContext());
      b.setInsertionPointAfter(func);
      Location loc = op.getLoc();
      Type qT = op.getQ().getType(), kT = op.getK().getType(), vT = op.getV().getType();
      Type oT = op.getO().getType(), lseT = op.getLse().getType();
      // o and dO arrive in the inputs' dtype (BackwardArgs), o's shape.
      Type oIn = RankedTensorType::get(cast<RankedTensorType>(oT).getShape(),
                                       op.getSpec().getDtype());
      SmallVector<Type> ins{qT, kT, vT, oIn, lseT, oIn};
      SmallVector<Type> outs{gradType(qT), gradType(kT), gradType(vT)};
      auto bwd = b.create<func::FuncOp>(loc, name, b.getFunctionType(ins, outs));
      Block *body = bwd.addEntryBlock();
      b.setInsertionPointToStart(body);
      auto args = body->getArguments();
      auto grad = b.create<AttentionBackwardOp>(loc, outs[0], outs[1], outs[2], args[0], args[1],
                                                args[2], args[3], args[4], args[5], op.getSpec());
      b.create<func::ReturnOp>(loc, grad.getResults());
    }
  }
};

struct MuseDecomposeBackward
    : public mlir::muse::impl::MuseDecomposeBackwardBase<MuseDecomposeBackward> {
  void runOnOperation() override {
    SmallVector<AttentionBackwardOp> ops;
    getOperation()->walk([&](AttentionBackwardOp op) { ops.push_back(op); });
    for (AttentionBackwardOp op : ops) {
      SpecAttr spec = op.getSpec();
      MLIRContext *ctx = op.getContext();
      OpBuilder b(op);
      Location loc = op.getLoc();
      int64_t D = spec.getHeadDim(), CQ = spec.getQueryClusters(), CK = spec.getKeyClusters();
      auto rows = b.create<BackwardRowsOp>(
          loc, op.getDq().getType(), f32Tensor(ctx, {kDyn, kDyn, 2 * CK}),
          f32Tensor(ctx, {kDyn, kDyn, D}), f32Tensor(ctx, {kDyn, kDyn}), op.getQ(), op.getK(),
          op.getV(), op.getO(), op.getLse(), op.getDout(), spec);
      auto keys = b.create<BackwardKeysOp>(
          loc, op.getDk().getType(), op.getDv().getType(), f32Tensor(ctx, {kDyn, CQ, CK, D}),
          op.getQ(), op.getK(), op.getV(), op.getLse(), op.getDout(), rows.getPg(),
          rows.getDelta(), spec);
      auto dq = b.create<BackwardCentroidOp>(loc, op.getDq().getType(), rows.getDx(), rows.getDr(),
                                             keys.getDqbar(), spec);
      op.getDq().replaceAllUsesWith(dq.getDq());
      op.getDk().replaceAllUsesWith(keys.getDk());
      op.getDv().replaceAllUsesWith(keys.getDv());
      op.erase();
    }
  }
};

/// One backward kernel: wrapper name, template, threads, grid, stage text and
/// view (causal plans: "full" once, else once per far-field level).
struct BwdKernel {
  const char *name, *instance;
  int64_t threads;
  DimExpr grid[3];
  const char *stage;
  const char *view = "full";
};

/// 16-bit specs: the last launches, which round the fp32 accumulators into
/// the caller's dq (causal plans; acausal ones have backward_centroid write
/// it) and dk, dv where the caller asked for the input dtype (they return at
/// once otherwise, or where backward_keys wrote dk, dv; without acc_dk, acc_dv
/// emit_dkdv is one block, whose only work is its compile-time check).
std::vector<BwdKernel> emitKernels(SpecAttr spec) {
  if (spec.getDtype().isF32())
    return {};
  const int64_t D = spec.getHeadDim(), W = std::max(D, spec.getValueDim());
  const DimExpr one{Sym::One, 1, 1};
  std::vector<BwdKernel> k;
  if (spec.getCausal())
    k.push_back({"muse_emit_dq", "muse::emit_dq<MuseCfg>", kEmitThreads,
                 {DimExpr{Sym::N, kEmitPerBlock / D, 1}, DimExpr{Sym::QHeads, 1, 1}, one},
                 "dq rounded to the input dtype (when asked for)"});
  const bool acc = keepsKVAccumulators(spec);
  const DimExpr rows = acc ? DimExpr{Sym::M, kEmitPerBlock / W, 1} : one;
  const DimExpr heads = acc ? DimExpr{Sym::KHeads, 1, 1} : one;
  k.push_back({"muse_emit_dkdv", acc ? "muse::emit_dkdv<MuseCfg, true>" : "muse::emit_dkdv<MuseCfg, false>",
               kEmitThreads, {rows, heads, one}, "dk, dv rounded to the input dtype (when asked for)"});
  return k;
}

/// The schedule muse-schedule gave the forward function `forwardName` (its
/// summarize stage): the causal backward re-runs summarize, whose launch
/// bounds are the forward's THREADS.
ScheduleAttr forwardSchedule(ModuleOp module, StringRef forwardName) {
  auto fwd = module.lookupSymbol<func::FuncOp>(forwardName);
  if (!fwd)
    return ScheduleAttr();
  ScheduleAttr found;
  fwd.walk([&](Operation *op) {
    if (auto s = op->getAttrOfType<ScheduleAttr>("schedule"))
      found = s;
  });
  return found;
}

/// The causal backward plan (templates/README.md "Backward (causal)"): the
/// window's exact backward once, then per level the level's partition
/// restored from what the forward saved, its centroids and summaries
/// recomputed from it, and the acausal backward stages on the level's views.
LogicalResult outlineCausalBackward(func::FuncOp func, SpecAttr spec) {
  MLIRContext *ctx = func.getContext();
  auto module = func->getParentOfType<ModuleOp>();
  StringRef name = func.getSymName();
  ScheduleAttr sched = forwardSchedule(module, name.drop_back(strlen("_backward")));
  if (!sched)
    return func.emitOpError() << "needs the scheduled forward function @"
                              << name.drop_back(strlen("_backward"))
                              << " (run muse-schedule before muse-outline-backward)";
  const int64_t D = spec.getHeadDim(), CQ = spec.getQueryClusters(), CK = spec.getKeyClusters();
  const int64_t S = spec.getBlockSize(), T = sched.getThreads();
  const int64_t F = spec.getSummaryWidth(); // bwd_pairs rows are as wide as summaries
  OpBuilder b(func);
  Location loc = func.getLoc();
  auto plan = b.create<PlanOp>(loc, name, spec, sched);
  plan->setAttr("muse.pass", b.getStringAttr("backward"));
  OpBuilder pb = OpBuilder::atBlockEnd(&plan.getBody().front());
  Type f32 = pb.getF32Type();
  // Per level the views index rows as segments x segment length <= N + S and
  // per-segment data as ceil(X / 2S) per position + X (Outline.cpp's causal
  // buffers); bwd_delta is per position of the whole sequence.
  auto perSeg = [&](int64_t x) { return (x + 2 * S - 1) / (2 * S); };
  if (!fusedPairs(spec))
    pb.create<BufferOp>(loc, "bwd_pg", f32, Side::Query, 2 * CK, 0, 2 * CK * S);
  pb.create<BufferOp>(loc, "bwd_dr", f32, Side::Query, D, 0, D * S);
  pb.create<BufferOp>(loc, "bwd_delta", f32, Side::Query, 1, 0, 0);
  pb.create<BufferOp>(loc, "bwd_dqbar", f32, Side::Query, perSeg(CQ * CK * D), 0, CQ * CK * D);
  pb.create<BufferOp>(loc, "bwd_pairs", f32, Side::Query, perSeg(CQ * CK * F), 0, CQ * CK * F);
  addGradientAccumulators(pb, loc, spec);
  const DimExpr one{Sym::One, 1, 1};
  const DimExpr qh{Sym::QHeads, 1, 1}, kh{Sym::KHeads, 1, 1};
  std::vector<BwdKernel> kernels = {
      {"muse_backward_window_dq", "muse::backward_window_dq<MuseCfg>", windowThreads(spec, true),
       {DimExpr{Sym::N, windowRows(spec, true), 1}, qh, one},
       "causal backward: exact window, dq and delta"},
      {"muse_backward_window_dkdv", "muse::backward_window_dkdv<MuseCfg>", windowThreads(spec, false),
       {DimExpr{Sym::M, windowRows(spec, false), 1}, kh, one}, "causal backward: exact window, dk and dv"},
      {"muse_backward_restore", "muse::backward_restore<MuseCfg>", 256,
       {DimExpr{Sym::N, 256, 1}, qh, one}, "the level's saved member and key partition",
       "segment"},
      {"muse_backward_restore", "muse::backward_restore<MuseCfg>", 256,
       {DimExpr{Sym::N, 256, 1}, qh, one}, "the level's saved served clusters", "served"},
      {"muse_backward_cluster_sort_q", "muse::cluster_sort<MuseCfg, muse::Side::Query>", 1024,
       {one, qh, one}, "permutation of the level's members by cluster", "segment"},
      {"muse_backward_centroids", "muse::backward_centroids<MuseCfg>", D,
       {DimExpr{Sym::One, 1, CQ}, qh, one}, "query centroids: means of the saved partition",
       "segment"},
      {"muse_backward_cluster_sort_k", "muse::cluster_sort<MuseCfg, muse::Side::Key>", 1024,
       {one, kh, one}, "permutation of the level's keys by cluster", "segment"},
      {"muse_backward_summarize", "muse::summarize<MuseCfg>", T,
       {DimExpr{Sym::One, 1, CK}, qh, one}, "stage 1 recomputed from the saved partition",
       "segment"},
  };
  if (spec.getNearClusters() > 0)
    kernels.push_back({"muse_backward_select_near", "muse::select_near<MuseCfg>", 32,
                       {DimExpr{Sym::One, 1, CQ}, qh, one}, "near clusters of the level",
                       "segment"});
  const BwdKernel tail[] = {
      {"muse_backward_served_sort", "muse::served_sort<MuseCfg>", 1024, {one, qh, one},
       "the level's served queries grouped by cluster", "served"},
      {"muse_backward_rows", rowsInstance(spec), kBwdThreads,
       {rowsGrid(spec), qh, one},
       fusedPairs(spec) ? "backward stage 2 of the level's served queries (dq +=) and their pair sums"
                        : "backward stage 2 of the level's served queries (dq +=)",
       "served"},
      {"muse_backward_pairs", "muse::backward_pairs<MuseCfg>", kPairThreads,
       {DimExpr{Sym::One, 1, CQ}, qh, one}, "stage-1 pair sums over the level's served queries",
       "served"},
      {"muse_backward_keys", "muse::backward_keys<MuseCfg>", kBwdThreads,
       {DimExpr{Sym::One, 1, CK}, kh, one}, "backward stage 1 of the level's keys (dk, dv +=)",
       "served"},
      {"muse_backward_centroid", "muse::backward_centroid<MuseCfg>", D,
       {DimExpr{Sym::One, 1, CQ}, qh, one}, "the level's centroid gradient per member",
       "served"},
      {"muse_backward_members", "muse::backward_members<MuseCfg>", kBwdThreads,
       {DimExpr{Sym::N, kBwdWarps, 1}, qh, one}, "the centroid share into the members' dq",
       "segment"},
  };
  for (const BwdKernel &k : tail)
    if (launched(spec, k.name))
      kernels.push_back(k);
  for (const BwdKernel &k : emitKernels(spec))
    kernels.push_back(k);
  llvm::StringSet<> declared;
  for (const BwdKernel &k : kernels)
    if (declared.insert(k.name).second)
      pb.create<KernelOp>(loc, k.name, k.instance, k.threads, 0, k.stage,
                          kernelMinBlocks(pb, spec, k.name, k.threads));
  for (const BwdKernel &k : kernels)
    pb.create<LaunchOp>(loc, k.name, DimAttr::fromDimExpr(ctx, k.grid[0]),
                        DimAttr::fromDimExpr(ctx, k.grid[1]), DimAttr::fromDimExpr(ctx, k.grid[2]),
                        StringRef(k.view) == "full" ? StringAttr() : pb.getStringAttr(k.view));
  func.erase();
  return success();
}

LogicalResult outlineBackward(func::FuncOp func) {
  SpecAttr spec;
  bool any = false;
  for (Operation &op : func.getBody().getOps()) {
    if (isa<AttentionBackwardOp>(op))
      return op.emitOpError()
             << "must be decomposed before outlining (run muse-decompose-backward first)";
    if (!isa<BackwardRowsOp, BackwardKeysOp, BackwardCentroidOp>(op))
      continue;
    SpecAttr s = op.getAttrOfType<SpecAttr>("spec");
    if (spec && s != spec)
      return op.emitOpError() << "has a different spec than the other backward stages of @"
                              << func.getSymName();
    spec = s;
    any = true;
  }
  if (!any)
    return success(); // not a backward function
  if (spec.getCausal())
    return outlineCausalBackward(func, spec);
  MLIRContext *ctx = func.getContext();
  const int64_t D = spec.getHeadDim(), CQ = spec.getQueryClusters(), CK = spec.getKeyClusters();
  OpBuilder b(func);
  Location loc = func.getLoc();
  // The backward kernels tile nothing (a warp per row): the schedule records
  // their threads; block_q and block_k hold the smallest legal tile, unused.
  auto sched = ScheduleAttr::get(ctx, 16, 16, kBwdThreads);
  auto plan = b.create<PlanOp>(loc, func.getSymName(), spec, sched);
  plan->setAttr("muse.pass", b.getStringAttr("backward"));
  OpBuilder pb = OpBuilder::atBlockEnd(&plan.getBody().front());
  Type f32 = pb.getF32Type();
  // Scratch of one call, per query head (params.cuh, after the causal fields).
  if (!fusedPairs(spec))
    pb.create<BufferOp>(loc, "bwd_pg", f32, Side::Query, 2 * CK, 0, 0);
  pb.create<BufferOp>(loc, "bwd_dr", f32, Side::Query, D, 0, 0);
  pb.create<BufferOp>(loc, "bwd_delta", f32, Side::Query, 1, 0, 0);
  pb.create<BufferOp>(loc, "bwd_dqbar", f32, Side::Query, 0, 0, CQ * CK * D);
  pb.create<BufferOp>(loc, "bwd_pairs", f32, Side::Query, 0, 0, CQ * CK * spec.getSummaryWidth());
  addGradientAccumulators(pb, loc, spec);
  const DimExpr one{Sym::One, 1, 1};
  const BwdKernel all[] = {
      {"muse_backward_rows", rowsInstance(spec), kBwdThreads,
       {rowsGrid(spec), DimExpr{Sym::QHeads, 1, 1}, one},
       fusedPairs(spec) ? "backward stage 2: per query, far-field and near-field gradients; stage-1 pair sums"
                        : "backward stage 2: per query, far-field and near-field gradients"},
      {"muse_backward_pairs", "muse::backward_pairs<MuseCfg>", kPairThreads,
       {DimExpr{Sym::One, 1, CQ}, DimExpr{Sym::QHeads, 1, 1}, one},
       "backward stage 1: pair sums over each query cluster's members"},
      {"muse_backward_keys", "muse::backward_keys<MuseCfg>", kBwdThreads,
       {DimExpr{Sym::One, 1, CK}, DimExpr{Sym::KHeads, 1, 1}, one},
       "backward stage 1 and near field: dk, dv per key cluster"},
      {"muse_backward_centroid", "muse::backward_centroid<MuseCfg>", D,
       {DimExpr{Sym::One, 1, CQ}, DimExpr{Sym::QHeads, 1, 1}, one},
       "backward: centroid gradient spread to the members, dq"},
  };
  std::vector<BwdKernel> kernels;
  for (const BwdKernel &k : all)
    if (launched(spec, k.name))
      kernels.push_back(k);
  for (const BwdKernel &k : emitKernels(spec))
    kernels.push_back(k);
  for (const BwdKernel &k : kernels)
    pb.create<KernelOp>(loc, k.name, k.instance, k.threads, 0, k.stage,
                        kernelMinBlocks(pb, spec, k.name, k.threads));
  for (const BwdKernel &k : kernels)
    pb.create<LaunchOp>(loc, k.name, DimAttr::fromDimExpr(ctx, k.grid[0]),
                        DimAttr::fromDimExpr(ctx, k.grid[1]), DimAttr::fromDimExpr(ctx, k.grid[2]),
                        StringAttr());
  func.erase();
  return success();
}

struct MuseOutlineBackward
    : public mlir::muse::impl::MuseOutlineBackwardBase<MuseOutlineBackward> {
  void runOnOperation() override {
    SmallVector<func::FuncOp> funcs(getOperation().getOps<func::FuncOp>());
    for (func::FuncOp func : funcs)
      if (failed(outlineBackward(func)))
        return signalPassFailure();
  }
};
} // namespace
