//===- MuseAttrs.cpp - #muse.spec, #muse.schedule, #muse.dim --------------===//
#include "muse/Dialect/Muse/IR/MuseDialect.h"
#include "muse/Spec/Spec.h"
#include "muse/Target/Cuda/PlanText.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

using namespace mlir;
using namespace mlir::muse;

#include "muse/Dialect/Muse/IR/MuseEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "muse/Dialect/Muse/IR/MuseAttrs.cpp.inc"

void MuseDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "muse/Dialect/Muse/IR/MuseAttrs.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// #muse.spec
//===----------------------------------------------------------------------===//

namespace {
/// The spec's fields with the defaults of muse::Spec (taken from it, so the
/// text form and the YAML form cannot disagree), filled while parsing.
struct SpecFields {
  static inline const ::muse::Spec kDefaults{};
  std::string name = kDefaults.name;
  bool causal = kDefaults.causal;
  int64_t headDim = kDefaults.headDim, valueDim = kDefaults.valueDim;
  Type dtype;
  FloatAttr scale;
  int64_t kvHeadsRatio = kDefaults.kvHeadsRatio, queryClusters = kDefaults.queryClusters,
          keyClusters = kDefaults.keyClusters, kmeansIters = kDefaults.kmeansIters;
  int64_t order = kDefaults.order, nearClusters = kDefaults.nearClusters,
          blockSize = kDefaults.blockSize, windowBlocks = kDefaults.windowBlocks;
  int64_t blockQ = kDefaults.blockQ, blockK = kDefaults.blockK, warps = kDefaults.warps;
  std::string arch = kDefaults.arch;
};

constexpr const char *kSpecKeys =
    "name, causal, head_dim, value_dim, dtype, scale, kv_heads_ratio, query_clusters, "
    "key_clusters, kmeans_iters, order, near_clusters, block_size, window_blocks, block_q, "
    "block_k, warps, arch";
} // namespace

Attribute SpecAttr::parse(AsmParser &parser, Type) {
  MLIRContext *ctx = parser.getContext();
  SpecFields f;
  f.dtype = BFloat16Type::get(ctx);
  llvm::StringSet<> seen;
  if (parser.parseLess())
    return {};
  auto parseField = [&]() -> ParseResult {
    SMLoc loc = parser.getCurrentLocation();
    std::string key;
    if (parser.parseKeywordOrString(&key) || parser.parseEqual())
      return failure();
    if (!seen.insert(key).second)
      return parser.emitError(loc, "spec field '") << key << "' given twice";
    auto parseInt = [&](int64_t &v) { return parser.parseInteger(v); };
    if (key == "name")
      return parser.parseString(&f.name);
    if (key == "arch")
      return parser.parseString(&f.arch);
    if (key == "causal") {
      if (succeeded(parser.parseOptionalKeyword("true")))
        f.causal = true;
      else if (succeeded(parser.parseOptionalKeyword("false")))
        f.causal = false;
      else
        return parser.emitError(parser.getCurrentLocation(), "expected 'true' or 'false' for causal");
      return success();
    }
    if (key == "dtype")
      return parser.parseType(f.dtype);
    if (key == "scale") {
      if (succeeded(parser.parseOptionalKeyword("auto")))
        return success();
      double v = 0;
      if (parser.parseFloat(v))
        return failure();
      f.scale = FloatAttr::get(Float64Type::get(ctx), v);
      return success();
    }
    std::pair<const char *, int64_t *> ints[] = {
        {"head_dim", &f.headDim},           {"value_dim", &f.valueDim},
        {"kv_heads_ratio", &f.kvHeadsRatio}, {"query_clusters", &f.queryClusters},
        {"key_clusters", &f.keyClusters},   {"kmeans_iters", &f.kmeansIters},
        {"order", &f.order},                {"near_clusters", &f.nearClusters},
        {"block_size", &f.blockSize},       {"window_blocks", &f.windowBlocks},
        {"block_q", &f.blockQ},             {"block_k", &f.blockK},
        {"warps", &f.warps}};
    for (auto &[name, ptr] : ints)
      if (key == name)
        return parseInt(*ptr);
    return parser.emitError(loc, "unknown spec field '") << key << "'; allowed: " << kSpecKeys;
  };
  if (failed(parser.parseOptionalGreater())) {
    if (parser.parseCommaSeparatedList(parseField) || parser.parseGreater())
      return {};
  }
  return parser.getChecked<SpecAttr>(ctx, f.name, f.causal, f.headDim, f.valueDim, f.dtype, f.scale,
                                     f.kvHeadsRatio, f.queryClusters, f.keyClusters, f.kmeansIters,
                                     f.order, f.nearClusters, f.blockSize, f.windowBlocks, f.blockQ,
                                     f.blockK, f.warps, f.arch);
}

void SpecAttr::print(AsmPrinter &p) const {
  p << "<name = \"" << getName() << "\", causal = " << (getCausal() ? "true" : "false")
    << ", head_dim = " << getHeadDim() << ", value_dim = " << getValueDim() << ", dtype = ";
  p.printType(getDtype());
  p << ", scale = ";
  if (getScale())
    p.printFloat(getScale().getValue());
  else
    p << "auto";
  p << ", kv_heads_ratio = " << getKvHeadsRatio() << ", query_clusters = " << getQueryClusters()
    << ", key_clusters = " << getKeyClusters() << ", kmeans_iters = " << getKmeansIters()
    << ", order = " << getOrder() << ", near_clusters = " << getNearClusters()
    << ", block_size = " << getBlockSize() << ", window_blocks = " << getWindowBlocks()
    << ", block_q = " << getBlockQ() << ", block_k = " << getBlockK() << ", warps = " << getWarps()
    << ", arch = \"" << getArch() << "\">";
}

static bool isTileSize(int64_t v) { return v == 0 || (v >= 16 && v <= 256 && (v & (v - 1)) == 0); }

static int64_t archNumberOf(StringRef arch) {
  int64_t n = 0;
  if (!arch.consume_front("sm_") || arch.getAsInteger(10, n))
    return 0;
  return n;
}

LogicalResult SpecAttr::verify(function_ref<InFlightDiagnostic()> emitError, StringRef name,
                               bool causal, int64_t headDim, int64_t valueDim, Type dtype,
                               FloatAttr scale, int64_t kvHeadsRatio, int64_t queryClusters,
                               int64_t keyClusters, int64_t kmeansIters, int64_t order,
                               int64_t nearClusters, int64_t blockSize, int64_t windowBlocks,
                               int64_t blockQ, int64_t blockK, int64_t warps, StringRef arch) {
  if (name.empty())
    return emitError() << "spec name must not be empty";
  if (headDim != 64 && headDim != 128)
    return emitError() << "head_dim = " << headDim << " is not supported; allowed: 64, 128";
  if (valueDim != 64 && valueDim != 128)
    return emitError() << "value_dim = " << valueDim << " is not supported; allowed: 64, 128";
  if (!dtype || !(dtype.isBF16() || dtype.isF16() || dtype.isF32()))
    return emitError() << "dtype " << dtype << " is not supported; allowed: bf16, f16, f32";
  if (scale && !(scale.getValueAsDouble() > 0 && std::isfinite(scale.getValueAsDouble())))
    return emitError() << "scale must be auto or a finite number > 0";
  if (kvHeadsRatio < 1)
    return emitError() << "kv_heads_ratio = " << kvHeadsRatio << " must be >= 1";
  // cluster_sort scans the cluster counts with one 1024-thread block.
  if (queryClusters < 1 || keyClusters < 1 || queryClusters > 1024 || keyClusters > 1024)
    return emitError() << "query_clusters = " << queryClusters << ", key_clusters = " << keyClusters
                       << ": each must be in [1, 1024]";
  if (kmeansIters < 1)
    return emitError() << "kmeans_iters = " << kmeansIters << " must be >= 1";
  if (order != 0 && order != 1)
    return emitError() << "order = " << order << " is not supported; allowed: 0 (monopole), 1 (dipole)";
  if (nearClusters < 0 || nearClusters > keyClusters)
    return emitError() << "near_clusters = " << nearClusters << " must be in [0, key_clusters = "
                       << keyClusters << "]";
  if (blockSize < 1 || windowBlocks < 1)
    return emitError() << "block_size and window_blocks must be >= 1 (got " << blockSize << ", "
                       << windowBlocks << ")";
  if (!isTileSize(blockQ) || !isTileSize(blockK))
    return emitError() << "block_q = " << blockQ << ", block_k = " << blockK
                       << ": each must be 0 (schedule chooses) or a power of two in [16, 256]";
  // The kernels stride over tiles with a power-of-two thread count.
  if (warps != 0 && warps != 1 && warps != 2 && warps != 4 && warps != 8 && warps != 16)
    return emitError() << "warps = " << warps << " is not supported; allowed: 0 (schedule chooses), "
                       << "1, 2, 4, 8, 16";
  if (archNumberOf(arch) < 80)
    return emitError() << "arch \"" << arch << "\" is not supported; allowed: sm_XY with XY >= 80 "
                       << "(e.g. sm_80, sm_90, sm_100)";
  return success();
}

double SpecAttr::getEffectiveScale() const {
  if (getScale())
    return getScale().getValueAsDouble();
  return 1.0 / std::sqrt(static_cast<double>(getHeadDim()));
}

int64_t SpecAttr::getArchNumber() const { return archNumberOf(getArch()); }

//===----------------------------------------------------------------------===//
// #muse.schedule
//===----------------------------------------------------------------------===//

LogicalResult ScheduleAttr::verify(function_ref<InFlightDiagnostic()> emitError, int64_t blockQ,
                                   int64_t blockK, int64_t threads) {
  if (blockQ == 0 || blockK == 0 || !isTileSize(blockQ) || !isTileSize(blockK))
    return emitError() << "schedule block_q = " << blockQ << ", block_k = " << blockK
                       << ": each must be a power of two in [16, 256]";
  if (threads < 32 || threads > 1024 || (threads & (threads - 1)) != 0)
    return emitError() << "schedule threads = " << threads
                       << " must be a power of two in [32, 1024]";
  return success();
}

//===----------------------------------------------------------------------===//
// #muse.dim
//===----------------------------------------------------------------------===//

Attribute DimAttr::parse(AsmParser &parser, Type) {
  std::string text;
  SMLoc loc = parser.getCurrentLocation();
  if (parser.parseLess() || parser.parseString(&text) || parser.parseGreater())
    return {};
  ::muse::DimExpr e;
  std::string error;
  if (!::muse::parseDimExpr(text, e, error)) {
    parser.emitError(loc) << error;
    return {};
  }
  return fromDimExpr(parser.getContext(), e);
}

void DimAttr::print(AsmPrinter &p) const { p << "<\"" << toDimExpr().str() << "\">"; }

LogicalResult DimAttr::verify(function_ref<InFlightDiagnostic()> emitError, StringRef sym,
                              int64_t div, int64_t mul) {
  if (!::muse::parseSym(sym.str()))
    return emitError() << "dimension symbol '" << sym << "' is not one of 1, N, M, B*H, B*Hkv";
  if (div < 1 || mul < 1)
    return emitError() << "dimension divisor and multiplier must be >= 1 (got " << div << ", "
                       << mul << ")";
  return success();
}

::muse::DimExpr DimAttr::toDimExpr() const {
  ::muse::DimExpr e;
  e.sym = ::muse::parseSym(getSym().str()).value_or(::muse::Sym::One);
  e.div = getDiv();
  e.mul = getMul();
  return e;
}

DimAttr DimAttr::fromDimExpr(MLIRContext *context, const ::muse::DimExpr &e) {
  return DimAttr::get(context, ::muse::symName(e.sym), e.div, e.mul);
}
