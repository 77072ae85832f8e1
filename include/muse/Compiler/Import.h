//===- Import.h - muse-import: a Spec as a muse.attention module ----------===//
#ifndef MUSE_COMPILER_IMPORT_H
#define MUSE_COMPILER_IMPORT_H

#include "muse/Dialect/Muse/IR/MuseDialect.h"
#include "muse/Spec/Spec.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace muse {

/// The #muse.spec attribute of `spec`; emits at `loc` and returns null when the
/// spec breaks one of the attribute's rules.
mlir::muse::SpecAttr specAttrFromSpec(const Spec &spec, mlir::Location loc);

/// A module with one func.func @<name>(q, k, v) -> (o, lse) whose body is one
/// muse.attention. Needs the muse and func dialects loaded in loc's context.
mlir::OwningOpRef<mlir::ModuleOp> importSpec(const Spec &spec, mlir::Location loc);

/// Loads what importSpec and the lowering pipeline need into `context`.
void loadMuseDialects(mlir::MLIRContext &context);

} // namespace muse

#endif
