//===- MuseOps.cpp - Verifiers of the stage and plan ops ------------------===//
//
// Every stage op carries the spec, so its verifier checks the static dims the
// spec fixes (head_dim, value_dim, cluster counts, near_clusters), the element
// types, and that the op belongs to the spec's pipeline (order, near field).
// B, H, N and M stay dynamic: they are runtime arguments.
//
//===----------------------------------------------------------------------===//
#include "muse/Dialect/Muse/IR/MuseDialect.h"
#include "muse/Target/Cuda/PlanText.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/StringMap.h"

using namespace mlir;
using namespace mlir::muse;

namespace {
constexpr int64_t kAny = ShapedType::kDynamic;

/// Checks that `value` is a ranked tensor of `elem` whose dims equal `dims`
/// (kAny: any size, static or dynamic).
LogicalResult checkTensor(Operation *op, StringRef what, Value value, ArrayRef<int64_t> dims,
                          Type elem, StringRef meaning) {
  auto t = dyn_cast<RankedTensorType>(value.getType());
  bool ok = t && t.getRank() == static_cast<int64_t>(dims.size()) && t.getElementType() == elem;
  for (size_t i = 0; ok && i < dims.size(); ++i)
    ok = dims[i] == kAny || t.getDimSize(i) == dims[i];
  if (ok)
    return success();
  std::string expected;
  llvm::raw_string_ostream os(expected);
  os << "tensor<";
  for (int64_t d : dims)
    os << (d == kAny ? std::string("?") : std::to_string(d)) << "x";
  os << elem << ">";
  return op->emitOpError() << what << " must be " << os.str() << " (" << meaning << "), got "
                           << value.getType();
}

/// Two dims that name the same runtime size must agree when both are static.
LogicalResult checkSameDim(Operation *op, StringRef meaning, Value a, unsigned ia, Value b,
                           unsigned ib) {
  auto ta = cast<RankedTensorType>(a.getType());
  auto tb = cast<RankedTensorType>(b.getType());
  if (ta.isDynamicDim(ia) || tb.isDynamicDim(ib) || ta.getDimSize(ia) == tb.getDimSize(ib))
    return success();
  return op->emitOpError() << meaning << " differs: " << ta.getDimSize(ia) << " vs "
                           << tb.getDimSize(ib);
}

Type i32(Operation *op) { return IntegerType::get(op->getContext(), 32); }
Type f32(Operation *op) { return Float32Type::get(op->getContext()); }

/// The checks shared by every op that reads q [B,H,N,D], k [B,Hkv,M,D], v [B,Hkv,M,Dv].
LogicalResult checkQKV(Operation *op, SpecAttr spec, Value q, Value k, Value v) {
  int64_t D = spec.getHeadDim(), Dv = spec.getValueDim();
  Type dt = spec.getDtype();
  if (failed(checkTensor(op, "q", q, {kAny, kAny, kAny, D}, dt, "[B, H, N, head_dim] of dtype")) ||
      failed(checkTensor(op, "k", k, {kAny, kAny, kAny, D}, dt, "[B, Hkv, M, head_dim] of dtype")) ||
      failed(checkTensor(op, "v", v, {kAny, kAny, kAny, Dv}, dt, "[B, Hkv, M, value_dim] of dtype")) ||
      failed(checkSameDim(op, "batch of q and k", q, 0, k, 0)) ||
      failed(checkSameDim(op, "batch of k and v", k, 0, v, 0)) ||
      failed(checkSameDim(op, "kv heads of k and v", k, 1, v, 1)) ||
      failed(checkSameDim(op, "key count of k and v", k, 2, v, 2)))
    return failure();
  auto tq = cast<RankedTensorType>(q.getType()), tk = cast<RankedTensorType>(k.getType());
  if (!tq.isDynamicDim(1) && !tk.isDynamicDim(1) &&
      tq.getDimSize(1) != tk.getDimSize(1) * spec.getKvHeadsRatio())
    return op->emitOpError() << "q has " << tq.getDimSize(1) << " heads, k has " << tk.getDimSize(1)
                             << ": with kv_heads_ratio = " << spec.getKvHeadsRatio()
                             << " q must have " << tk.getDimSize(1) * spec.getKvHeadsRatio();
  return success();
}

/// o [B,H,N,Dv] f32 and lse [B,H,N] f32 against q.
LogicalResult checkOutputs(Operation *op, SpecAttr spec, Value q, Value o, Value lse) {
  if (failed(checkTensor(op, "o", o, {kAny, kAny, kAny, spec.getValueDim()}, f32(op),
                         "[B, H, N, value_dim] f32")))
    return failure();
  if (lse && failed(checkTensor(op, "lse", lse, {kAny, kAny, kAny}, f32(op), "[B, H, N] f32")))
    return failure();
  for (unsigned i = 0; i < 3; ++i) {
    if (failed(checkSameDim(op, "a dim of q and o", q, i, o, i)))
      return failure();
    if (lse && failed(checkSameDim(op, "a dim of q and lse", q, i, lse, i)))
      return failure();
  }
  return success();
}

/// The cluster bookkeeping both stage-2 ops and summarize read.
LogicalResult checkClusters(Operation *op, SpecAttr spec, Value qCentroids, Value qPerm,
                            Value qOffsets, Value kPerm, Value kOffsets, bool keys = true) {
  int64_t CQ = spec.getQueryClusters(), CK = spec.getKeyClusters();
  if (qCentroids && failed(checkTensor(op, "q_centroids", qCentroids, {kAny, CQ, spec.getHeadDim()},
                                       f32(op), "[B*H, query_clusters, head_dim] f32")))
    return failure();
  if (qPerm && failed(checkTensor(op, "q_perm", qPerm, {kAny, kAny}, i32(op), "[B*H, N] i32")))
    return failure();
  if (qOffsets && failed(checkTensor(op, "q_offsets", qOffsets, {kAny, CQ + 1}, i32(op),
                                     "[B*H, query_clusters + 1] i32")))
    return failure();
  if (!keys)
    return success();
  if (failed(checkTensor(op, "k_perm", kPerm, {kAny, kAny}, i32(op), "[B*Hkv, M] i32")) ||
      failed(checkTensor(op, "k_offsets", kOffsets, {kAny, CK + 1}, i32(op),
                         "[B*Hkv, key_clusters + 1] i32")))
    return failure();
  return success();
}

LogicalResult checkSummaries(Operation *op, SpecAttr spec, Value s) {
  return checkTensor(op, "summaries", s,
                     {kAny, spec.getQueryClusters(), spec.getKeyClusters(), spec.getSummaryWidth()},
                     f32(op), "[B*H, query_clusters, key_clusters, 1 + head_dim + value_dim] f32");
}

/// `near` is present exactly when the spec asks for a near field.
LogicalResult checkNear(Operation *op, SpecAttr spec, Value near) {
  int64_t E = spec.getNearClusters();
  if (E == 0 && near)
    return op->emitOpError() << "has a near operand but the spec has near_clusters = 0";
  if (E > 0 && !near)
    return op->emitOpError() << "needs a near operand: the spec has near_clusters = " << E;
  if (near && failed(checkTensor(op, "near", near, {kAny, spec.getQueryClusters(), E}, i32(op),
                                 "[B*H, query_clusters, near_clusters] i32")))
    return failure();
  return success();
}
} // namespace

LogicalResult AttentionOp::verify() {
  if (failed(checkQKV(*this, getSpec(), getQ(), getK(), getV())))
    return failure();
  return checkOutputs(*this, getSpec(), getQ(), getO(), getLse());
}

LogicalResult KMeansOp::verify() {
  SpecAttr spec = getSpec();
  bool query = getSide() == Side::Query;
  int64_t C = query ? spec.getQueryClusters() : spec.getKeyClusters();
  if (failed(checkTensor(*this, "x", getX(), {kAny, kAny, kAny, spec.getHeadDim()}, spec.getDtype(),
                         query ? "q [B, H, N, head_dim] of dtype" : "k [B, Hkv, M, head_dim] of dtype")) ||
      failed(checkTensor(*this, "centroids", getCentroids(), {kAny, C, spec.getHeadDim()}, f32(*this),
                         query ? "[B*H, query_clusters, head_dim] f32"
                               : "[B*Hkv, key_clusters, head_dim] f32")) ||
      failed(checkTensor(*this, "assign", getAssign(), {kAny, kAny}, i32(*this),
                         query ? "[B*H, N] i32" : "[B*Hkv, M] i32")) ||
      failed(checkSameDim(*this, "point count of x and assign", getX(), 2, getAssign(), 1)))
    return failure();
  return success();
}

LogicalResult ClusterSortOp::verify() {
  SpecAttr spec = getSpec();
  bool query = getSide() == Side::Query;
  int64_t C = query ? spec.getQueryClusters() : spec.getKeyClusters();
  if (failed(checkTensor(*this, "assign", getAssign(), {kAny, kAny}, i32(*this), "[heads, n] i32")) ||
      failed(checkTensor(*this, "perm", getPerm(), {kAny, kAny}, i32(*this), "[heads, n] i32")) ||
      failed(checkTensor(*this, "offsets", getOffsets(), {kAny, C + 1}, i32(*this),
                         query ? "[B*H, query_clusters + 1] i32" : "[B*Hkv, key_clusters + 1] i32")) ||
      failed(checkSameDim(*this, "point count of assign and perm", getAssign(), 1, getPerm(), 1)))
    return failure();
  return success();
}

LogicalResult SummarizeOp::verify() {
  SpecAttr spec = getSpec();
  Value q = getQCentroids();
  int64_t D = spec.getHeadDim(), Dv = spec.getValueDim();
  Type dt = spec.getDtype();
  if (failed(checkTensor(*this, "k", getK(), {kAny, kAny, kAny, D}, dt, "[B, Hkv, M, head_dim] of dtype")) ||
      failed(checkTensor(*this, "v", getV(), {kAny, kAny, kAny, Dv}, dt, "[B, Hkv, M, value_dim] of dtype")) ||
      failed(checkClusters(*this, spec, q, {}, {}, getKPerm(), getKOffsets())) ||
      failed(checkSummaries(*this, spec, getSummaries())))
    return failure();
  return success();
}

LogicalResult SelectNearOp::verify() {
  SpecAttr spec = getSpec();
  if (spec.getNearClusters() == 0)
    return emitOpError() << "requires near_clusters > 0; the spec has near_clusters = 0";
  if (failed(checkSummaries(*this, spec, getSummaries())) ||
      failed(checkNear(*this, spec, getNear())))
    return failure();
  return success();
}

LogicalResult FarFieldOp::verify() {
  SpecAttr spec = getSpec();
  if (failed(checkQKV(*this, spec, getQ(), getK(), getV())) ||
      failed(checkClusters(*this, spec, getQCentroids(), getQPerm(), getQOffsets(), getKPerm(),
                           getKOffsets())) ||
      failed(checkSummaries(*this, spec, getSummaries())) ||
      failed(checkNear(*this, spec, getNear())) ||
      failed(checkOutputs(*this, spec, getQ(), getO(), getLse())))
    return failure();
  return success();
}

LogicalResult DipoleOp::verify() {
  SpecAttr spec = getSpec();
  if (spec.getOrder() < 1)
    return emitOpError() << "is the order-1 correction but the spec has order = " << spec.getOrder();
  if (failed(checkQKV(*this, spec, getQ(), getK(), getV())) ||
      failed(checkClusters(*this, spec, getQCentroids(), getQPerm(), getQOffsets(), getKPerm(),
                           getKOffsets())) ||
      failed(checkSummaries(*this, spec, getSummaries())) ||
      failed(checkNear(*this, spec, getNear())) ||
      failed(checkOutputs(*this, spec, getQ(), getOIn(), getLse())) ||
      failed(checkOutputs(*this, spec, getQ(), getO(), Value())))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Causal ops
//===----------------------------------------------------------------------===//

namespace {
LogicalResult requireCausal(Operation *op, SpecAttr spec) {
  if (spec.getCausal())
    return success();
  return op->emitOpError() << "belongs to the causal pipeline but the spec has causal = false";
}
} // namespace

LogicalResult WindowOp::verify() {
  SpecAttr spec = getSpec();
  if (failed(requireCausal(*this, spec)) || failed(checkQKV(*this, spec, getQ(), getK(), getV())) ||
      failed(checkOutputs(*this, spec, getQ(), getO(), getLse())))
    return failure();
  return success();
}

LogicalResult AssignServedOp::verify() {
  SpecAttr spec = getSpec();
  if (failed(requireCausal(*this, spec)) ||
      failed(checkTensor(*this, "q", getQ(), {kAny, kAny, kAny, spec.getHeadDim()}, spec.getDtype(),
                         "[B, H, N, head_dim] of dtype")) ||
      failed(checkClusters(*this, spec, getQCentroids(), getPerm(), getOffsets(), Value(), Value(),
                           /*keys=*/false)) ||
      failed(checkTensor(*this, "q_assign", getQAssign(), {kAny, kAny}, i32(*this),
                         "[segment heads, segment length] i32")))
    return failure();
  return success();
}

LogicalResult MergeOp::verify() {
  SpecAttr spec = getSpec();
  if (failed(requireCausal(*this, spec)))
    return failure();
  Value os[] = {getOWindow(), getOLevel(), getO()};
  Value ls[] = {getLseWindow(), getLseLevel(), getLse()};
  for (int i = 0; i < 3; ++i)
    if (failed(checkTensor(*this, "o", os[i], {kAny, kAny, kAny, spec.getValueDim()}, f32(*this),
                           "[B, H, N, value_dim] f32")) ||
        failed(checkTensor(*this, "lse", ls[i], {kAny, kAny, kAny}, f32(*this), "[B, H, N] f32")))
      return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Plan ops
//===----------------------------------------------------------------------===//

void PlanOp::build(OpBuilder &builder, OperationState &state, StringRef name, SpecAttr spec,
                   ScheduleAttr schedule) {
  state.addAttribute(getSymNameAttrName(state.name), builder.getStringAttr(name));
  state.addAttribute(getSpecAttrName(state.name), spec);
  state.addAttribute(getScheduleAttrName(state.name), schedule);
  Region *body = state.addRegion();
  body->push_back(new Block());
}

LogicalResult PlanOp::verify() {
  for (Operation &op : getBody().front())
    if (!isa<BufferOp, KernelOp, LaunchOp>(op))
      return op.emitOpError() << "is not allowed in a muse.plan (only muse.buffer, muse.kernel, "
                                 "muse.launch)";
  return success();
}

namespace {
/// The workspace buffers of templates/muse/params.cuh: element type and side.
struct BufferKind {
  bool isFloat;
  Side side;
};
const llvm::StringMap<BufferKind> &bufferKinds() {
  static const llvm::StringMap<BufferKind> kinds = {
      {"q_centroids", {true, Side::Query}}, {"k_centroids", {true, Side::Key}},
      {"q_sums", {true, Side::Query}},      {"k_sums", {true, Side::Key}},
      {"q_counts", {false, Side::Query}},   {"k_counts", {false, Side::Key}},
      {"q_assign", {false, Side::Query}},   {"k_assign", {false, Side::Key}},
      {"q_offsets", {false, Side::Query}},  {"k_offsets", {false, Side::Key}},
      {"q_perm", {false, Side::Query}},     {"k_perm", {false, Side::Key}},
      {"summaries", {true, Side::Query}},   {"near", {false, Side::Query}},
      {"row_lse", {true, Side::Query}},     {"dipole_kv", {false, Side::Key}},
      {"dipole_means", {true, Side::Key}},  {"part_o", {true, Side::Query}},
      {"run_lse", {true, Side::Query}},     {"served", {false, Side::Query}},
      // The backward plan's scratch (MuseBackwardOps.td).
      {"bwd_pg", {true, Side::Query}},      {"bwd_dr", {true, Side::Query}},
      {"bwd_delta", {true, Side::Query}},   {"bwd_dqbar", {true, Side::Query}},
      {"bwd_pairs", {true, Side::Query}},
      // fp32 accumulators of outputs delivered in the input dtype (emit.cuh).
      {"acc_o", {true, Side::Query}},       {"acc_dq", {true, Side::Query}},
      {"acc_dk", {true, Side::Key}},        {"acc_dv", {true, Side::Key}}};
  return kinds;
}
} // namespace

LogicalResult BufferOp::verify() {
  auto it = bufferKinds().find(getSymName());
  if (it == bufferKinds().end())
    return emitOpError() << "'" << getSymName()
                         << "' is not a MuseParams workspace buffer; allowed: q_centroids, "
                            "k_centroids, q_sums, k_sums, q_counts, k_counts, q_assign, k_assign, "
                            "q_offsets, k_offsets, q_perm, k_perm, summaries, near, row_lse, dipole_kv, "
                            "dipole_means, part_o, "
                            "run_lse, served, bwd_pg, bwd_dr, bwd_delta, bwd_dqbar, bwd_pairs, acc_o, "
                            "acc_dq, acc_dk, acc_dv";
  Type want = it->second.isFloat ? f32(*this) : i32(*this);
  if (getElemType() != want)
    return emitOpError() << "'" << getSymName() << "' holds " << want << ", not " << getElemType();
  if (getHeads() != it->second.side)
    return emitOpError() << "'" << getSymName() << "' is per "
                         << (it->second.side == Side::Query ? "query" : "key") << " head";
  if (getPerN() < 0 || getPerM() < 0 || getFixed() < 0)
    return emitOpError() << "per_n, per_m and fixed must be >= 0";
  return success();
}

LogicalResult KernelOp::verify() {
  if (getThreads() < 1 || getThreads() > 1024)
    return emitOpError() << "threads = " << getThreads() << " must be in [1, 1024]";
  if (getSharedBytes() < 0)
    return emitOpError() << "shared = " << getSharedBytes() << " must be >= 0";
  if (std::optional<uint64_t> minBlocks = getMinBlocks()) {
    const int64_t mb = static_cast<int64_t>(*minBlocks), threads = static_cast<int64_t>(getThreads());
    if (mb < 1 || mb * threads > 2048)
      return emitOpError() << "min_blocks = " << mb << " must be >= 1 with min_blocks x threads <= 2048 "
                           << "(the threads one SM holds), got threads = " << threads;
  }
  if (getInstance().empty())
    return emitOpError() << "needs the template instance it calls";
  return success();
}

LogicalResult LaunchOp::verify() {
  Operation *target = SymbolTable::lookupNearestSymbolFrom(*this, getKernelAttr());
  if (!isa_and_nonnull<KernelOp>(target))
    return emitOpError() << "launches " << getKernelAttr() << ", which is not a muse.kernel of this plan";
  if (auto view = getView()) {
    StringRef v = *view;
    if (v != "full" && v != "level" && v != "segment" && v != "served")
      return emitOpError() << "view = \"" << v << "\" is not one of full, level, segment, served";
    auto plan = (*this)->getParentOfType<PlanOp>();
    if (v != "full" && plan && !plan.getSpec().getCausal())
      return emitOpError() << "has view = \"" << v
                           << "\" but per-level views exist only in causal plans";
  }
  return success();
}

//===----------------------------------------------------------------------===//
// custom<Grid>: ("ceil(N/256)", "B*H", "1")
//===----------------------------------------------------------------------===//

static ParseResult parseGrid(OpAsmParser &parser, DimAttr &x, DimAttr &y, DimAttr &z) {
  DimAttr *dims[] = {&x, &y, &z};
  if (parser.parseLParen())
    return failure();
  for (int i = 0; i < 3; ++i) {
    std::string text;
    SMLoc loc = parser.getCurrentLocation();
    if ((i > 0 && parser.parseComma()) || parser.parseString(&text))
      return failure();
    ::muse::DimExpr e;
    std::string error;
    if (!::muse::parseDimExpr(text, e, error))
      return parser.emitError(loc) << error;
    *dims[i] = DimAttr::fromDimExpr(parser.getContext(), e);
  }
  return parser.parseRParen();
}

static void printGrid(OpAsmPrinter &p, Operation *, DimAttr x, DimAttr y, DimAttr z) {
  p << "(\"" << x.toDimExpr().str() << "\", \"" << y.toDimExpr().str() << "\", \""
    << z.toDimExpr().str() << "\")";
}

#define GET_OP_CLASSES
#include "muse/Dialect/Muse/IR/MuseOps.cpp.inc"
