//===- Decompose.cpp - muse.attention into the acausal forward stages -----===//
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

/// Builds the stage ops of ALGORITHM.md section 3 in the launch order of
/// templates/README.md: keys (k-means, permutation), then queries, then
/// stage 1, the near selection, stage 2 and the dipole correction.
LogicalResult decompose(AttentionOp op) {
  SpecAttr spec = op.getSpec();
  if (spec.getCausal())
    return op.emitOpError() << "has a causal spec; muse-decompose lowers acausal attention only "
                               "(causal: false) - causal lowering is not implemented yet";
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
