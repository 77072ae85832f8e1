//===- Decompose.cpp - muse.attention into the forward stages -------------===//
#include "muse/Dialect/Muse/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"

namespace mlir::muse {
#define GEN_PASS_DEF_MUSEDECOMPOSE
#include "muse/Dialect/Muse/Transforms/Passes.h.inc"
} // namespace mlir::muse

using namespace mlir;
using namespace mlir::muse;

namespace {
constexpr int64_t kDyn = ShapedType::kDynamic;

/// ALGORITHM.md section 4: the exact window, the stages of one far-field
/// level (each a batch of independent acausal problems over segments, run once
/// per level by the outlined plan) and the log-sum-exp merge. The level's
/// query k-means clusters L's own queries; assign_served groups R's queries
/// by their nearest non-empty L centroid, which stage 2 then serves.
LogicalResult decomposeCausal(AttentionOp op) {
  SpecAttr spec = op.getSpec();
  // Tiles of the window kernel never straddle a block, and segments are
  // whole blocks at dyadic offsets: S must be a power of two.
  int64_t S = spec.getBlockSize(), w = spec.getWindowBlocks();
  if (S < 16 || S > 4096 || (S & (S - 1)) != 0)
    return op.emitOpError() << "causal lowering needs block_size to be a power of two from 16 to "
                               "4096, got "
                            << S;
  if (w < 1 || w > 64)
    return op.emitOpError() << "causal lowering needs window_blocks from 1 to 64, got " << w;
  if (auto qt = dyn_cast<RankedTensorType>(op.getQ().getType()))
    if (auto kt = dyn_cast<RankedTensorType>(op.getK().getType()))
      if (!qt.isDynamicDim(2) && !kt.isDynamicDim(2) && qt.getDimSize(2) != kt.getDimSize(2))
        return op.emitOpError() << "is causal self-attention: q has " << qt.getDimSize(2)
                                << " positions but k has " << kt.getDimSize(2)
                                << "; causal MuSe needs N == M";
  OpBuilder b(op);
  Location loc = op.getLoc();
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  int64_t D = spec.getHeadDim(), CQ = spec.getQueryClusters(), CK = spec.getKeyClusters();
  auto tensor = [](ArrayRef<int64_t> dims, Type t) { return RankedTensorType::get(dims, t); };
  Type assignT = tensor({kDyn, kDyn}, i32);
  Type oT = op.getO().getType(), lseT = op.getLse().getType();

  auto window = b.create<WindowOp>(loc, oT, lseT, op.getQ(), op.getK(), op.getV(), spec, ScheduleAttr());
  auto kMeans = b.create<KMeansOp>(loc, tensor({kDyn, CK, D}, f32), assignT, Side::Key, op.getK(), spec);
  auto kSort = b.create<ClusterSortOp>(loc, assignT, tensor({kDyn, CK + 1}, i32), Side::Key,
                                       kMeans.getAssign(), spec);
  auto qMeans = b.create<KMeansOp>(loc, tensor({kDyn, CQ, D}, f32), assignT, Side::Query, op.getQ(), spec);
  // Member counts of L's query clusters: assign_served skips the empty ones.
  b.create<ClusterSortOp>(loc, assignT, tensor({kDyn, CQ + 1}, i32), Side::Query, qMeans.getAssign(), spec);
  auto served = b.create<AssignServedOp>(loc, assignT, tensor({kDyn, CQ + 1}, i32), op.getQ(),
                                         qMeans.getCentroids(), qMeans.getAssign(), spec);
  auto summarize = b.create<SummarizeOp>(
      loc, tensor({kDyn, CQ, CK, spec.getSummaryWidth()}, f32), qMeans.getCentroids(), op.getK(),
      op.getV(), kSort.getPerm(), kSort.getOffsets(), spec, ScheduleAttr());
  Value near;
  if (spec.getNearClusters() > 0)
    near = b.create<SelectNearOp>(loc, tensor({kDyn, CQ, spec.getNearClusters()}, i32),
                                  summarize.getSummaries(), spec);
  auto far = b.create<FarFieldOp>(loc, oT, lseT, op.getQ(), op.getK(), op.getV(), qMeans.getCentroids(),
                                  served.getPerm(), served.getOffsets(), kSort.getPerm(),
                                  kSort.getOffsets(), summarize.getSummaries(), near, spec,
                                  ScheduleAttr());
  Value o = far.getO();
  if (spec.getOrder() >= 1)
    o = b.create<DipoleOp>(loc, oT, o, far.getLse(), op.getQ(), op.getK(), op.getV(),
                           qMeans.getCentroids(), served.getPerm(), served.getOffsets(),
                           kSort.getPerm(), kSort.getOffsets(), summarize.getSummaries(), near, spec,
                           ScheduleAttr());
  auto merge = b.create<MergeOp>(loc, oT, lseT, window.getO(), window.getLse(), o, far.getLse(), spec);
  op.getO().replaceAllUsesWith(merge.getO());
  op.getLse().replaceAllUsesWith(merge.getLse());
  op.erase();
  return success();
}

/// Builds the stage ops of ALGORITHM.md section 3 in the launch order of
/// templates/README.md: keys (k-means, permutation), then queries, then
/// stage 1, the near selection, stage 2 and the dipole correction.
LogicalResult decompose(AttentionOp op) {
  SpecAttr spec = op.getSpec();
  if (spec.getCausal())
    return decomposeCausal(op);
  OpBuilder b(op);
  Location loc = op.getLoc();
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  int64_t D = spec.getHeadDim(), CQ = spec.getQueryClusters(), CK = spec.getKeyClusters();
  auto tensor = [](ArrayRef<int64_t> dims, Type t) { return RankedTensorType::get(dims, t); };
  Type assignT = tensor({kDyn, kDyn}, i32);

  auto kMeans = b.create<KMeansOp>(loc, tensor({kDyn, CK, D}, f32), assignT, Side::Key, op.getK(), spec);
  auto kSort = b.create<ClusterSortOp>(loc, assignT, tensor({kDyn, CK + 1}, i32), Side::Key,
                                       kMeans.getAssign(), spec);
  auto qMeans = b.create<KMeansOp>(loc, tensor({kDyn, CQ, D}, f32), assignT, Side::Query, op.getQ(), spec);
  auto qSort = b.create<ClusterSortOp>(loc, assignT, tensor({kDyn, CQ + 1}, i32), Side::Query,
                                       qMeans.getAssign(), spec);
  auto summarize = b.create<SummarizeOp>(
      loc, tensor({kDyn, CQ, CK, spec.getSummaryWidth()}, f32), qMeans.getCentroids(), op.getK(),
      op.getV(), kSort.getPerm(), kSort.getOffsets(), spec, ScheduleAttr());
  Value near;
  if (spec.getNearClusters() > 0)
    near = b.create<SelectNearOp>(loc, tensor({kDyn, CQ, spec.getNearClusters()}, i32),
                                  summarize.getSummaries(), spec);
  auto far = b.create<FarFieldOp>(loc, op.getO().getType(), op.getLse().getType(), op.getQ(),
                                  op.getK(), op.getV(), qMeans.getCentroids(), qSort.getPerm(),
                                  qSort.getOffsets(), kSort.getPerm(), kSort.getOffsets(),
                                  summarize.getSummaries(), near, spec, ScheduleAttr());
  Value o = far.getO();
  if (spec.getOrder() >= 1)
    o = b.create<DipoleOp>(loc, op.getO().getType(), o, far.getLse(), op.getQ(), op.getK(),
                           op.getV(), qMeans.getCentroids(), qSort.getPerm(), qSort.getOffsets(),
                           kSort.getPerm(), kSort.getOffsets(), summarize.getSummaries(), near,
                           spec, ScheduleAttr());
  op.getO().replaceAllUsesWith(o);
  op.getLse().replaceAllUsesWith(far.getLse());
  op.erase();
  return success();
}

struct MuseDecompose : public mlir::muse::impl::MuseDecomposeBase<MuseDecompose> {
  void runOnOperation() override {
    SmallVector<AttentionOp> ops;
    getOperation()->walk([&](AttentionOp op) { ops.push_back(op); });
    for (AttentionOp op : ops)
      if (failed(decompose(op)))
        return signalPassFailure();
  }
};
} // namespace
