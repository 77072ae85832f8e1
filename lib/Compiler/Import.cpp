//===- Import.cpp - muse-import -------------------------------------------===//
#include "muse/Compiler/Import.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"

using namespace mlir;

static Type elementType(::muse::DType t, MLIRContext *ctx) {
  switch (t) {
  case ::muse::DType::BF16: return BFloat16Type::get(ctx);
  case ::muse::DType::F16: return Float16Type::get(ctx);
  case ::muse::DType::F32: return Float32Type::get(ctx);
  }
  return {};
}

mlir::muse::SpecAttr (::muse::specAttrFromSpec)(const ::muse::Spec &spec, Location loc) {
  MLIRContext *ctx = loc.getContext();
  FloatAttr scale = spec.scale ? FloatAttr::get(Float64Type::get(ctx), *spec.scale) : FloatAttr();
  auto i64 = [](int v) { return static_cast<int64_t>(v); };
  return mlir::muse::SpecAttr::getChecked(
      [&] { return emitError(loc); }, ctx, llvm::StringRef(spec.name), spec.causal, i64(spec.headDim),
      i64(spec.valueDim), elementType(spec.dtype, ctx), scale, i64(spec.kvHeadsRatio),
      i64(spec.queryClusters), i64(spec.keyClusters), i64(spec.kmeansIters), i64(spec.order),
      i64(spec.nearClusters), i64(spec.blockSize), i64(spec.windowBlocks), i64(spec.blockQ),
      i64(spec.blockK), i64(spec.warps), llvm::StringRef(spec.arch));
}

OwningOpRef<ModuleOp> (::muse::importSpec)(const ::muse::Spec &spec, Location loc) {
  mlir::muse::SpecAttr attr = specAttrFromSpec(spec, loc);
  if (!attr)
    return {};
  MLIRContext *ctx = loc.getContext();
  OpBuilder b(ctx);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  b.setInsertionPointToEnd(module->getBody());
  constexpr int64_t kDyn = ShapedType::kDynamic;
  Type dt = attr.getDtype();
  Type q = RankedTensorType::get({kDyn, kDyn, kDyn, spec.headDim}, dt);
  Type v = RankedTensorType::get({kDyn, kDyn, kDyn, spec.valueDim}, dt);
  Type o = RankedTensorType::get({kDyn, kDyn, kDyn, spec.valueDim}, b.getF32Type());
  Type lse = RankedTensorType::get({kDyn, kDyn, kDyn}, b.getF32Type());
  auto func = b.create<func::FuncOp>(loc, spec.name, b.getFunctionType({q, q, v}, {o, lse}));
  Block *body = func.addEntryBlock();
  b.setInsertionPointToEnd(body);
  auto att = b.create<mlir::muse::AttentionOp>(loc, o, lse, body->getArgument(0),
                                               body->getArgument(1), body->getArgument(2), attr);
  b.create<func::ReturnOp>(loc, att->getResults());
  if (failed(mlir::verify(*module)))
    return {};
  return module;
}

void (::muse::loadMuseDialects)(MLIRContext &context) {
  context.loadDialect<mlir::muse::MuseDialect, func::FuncDialect>();
}
