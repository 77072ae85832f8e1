//===- MuseBackwardOps.cpp - Verifier of muse.attention_backward ----------===//
//
// The backward layer op checks what its lowering relies on (acausal or
// causal spec alike): q, k, v, o and dO of the spec's dtype and dims, f32
// lse and gradients. The three stage ops are only made by
// muse-decompose-backward from a verified layer op.
//
//===----------------------------------------------------------------------===//
#include "muse/Dialect/Muse/IR/MuseDialect.h"

using namespace mlir;
using namespace mlir::muse;

namespace {
/// A ranked tensor of `rank` dims, element `elem`, last dim `last` (0: any).
LogicalResult expectTensor(Operation *op, StringRef what, Type type, int64_t rank, Type elem,
                           int64_t last, StringRef meaning) {
  auto t = dyn_cast<RankedTensorType>(type);
  bool ok = t && t.getRank() == rank && t.getElementType() == elem &&
            (last == 0 || t.isDynamicDim(rank - 1) || t.getDimSize(rank - 1) == last);
  if (ok)
    return success();
  return op->emitOpError() << what << " must be a rank-" << rank << " tensor of " << elem
                           << (last ? " with last dim " + std::to_string(last) : std::string())
                           << " (" << meaning << "), got " << type;
}
} // namespace

LogicalResult AttentionBackwardOp::verify() {
  SpecAttr spec = getSpec();
  const int64_t D = spec.getHeadDim(), Dv = spec.getValueDim();
  Type dt = spec.getDtype(), f32 = Float32Type::get(getContext());
  Operation *op = getOperation();
  if (failed(expectTensor(op, "q", getQ().getType(), 4, dt, D, "[B, H, N, head_dim] of dtype")) ||
      failed(expectTensor(op, "k", getK().getType(), 4, dt, D, "[B, Hkv, M, head_dim] of dtype")) ||
      failed(expectTensor(op, "v", getV().getType(), 4, dt, Dv, "[B, Hkv, M, value_dim] of dtype")) ||
      failed(expectTensor(op, "o", getO().getType(), 4, dt, Dv, "the forward's output in dtype")) ||
      failed(expectTensor(op, "lse", getLse().getType(), 3, f32, 0, "the forward's lse")) ||
      failed(expectTensor(op, "dout", getDout().getType(), 4, dt, Dv, "dL/do in dtype")) ||
      failed(expectTensor(op, "dq", getDq().getType(), 4, f32, D, "dL/dq")) ||
      failed(expectTensor(op, "dk", getDk().getType(), 4, f32, D, "dL/dk")) ||
      failed(expectTensor(op, "dv", getDv().getType(), 4, f32, Dv, "dL/dv")))
    return failure();
  return success();
}
