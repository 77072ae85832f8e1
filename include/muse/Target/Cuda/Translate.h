//===- Translate.h - muse.plan to CUDA source, LaunchPlan and launcher ----===//
//
// The two exporters of an outlined module (muse-to-cuda, muse-to-host). They
// are pure printers: everything they print was decided by the passes and sits
// on the muse.plan op.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TARGET_CUDA_TRANSLATE_H
#define MUSE_TARGET_CUDA_TRANSLATE_H

#include "muse/Dialect/Muse/IR/MuseDialect.h"
#include "muse/Target/Cuda/LaunchPlan.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

#include <string>

namespace muse {

/// Whether `plan` is a backward plan (`muse.pass = "backward"`, muse-outline-backward).
bool isBackwardPlan(mlir::muse::PlanOp plan);
/// The backward plan @<name>_backward next to forward plan @<name>, or null.
mlir::muse::PlanOp findBackwardPlan(mlir::muse::PlanOp forward);

/// The single forward muse.plan of `module` (backward plans go with it);
/// emits an error when there is none or more.
mlir::FailureOr<mlir::muse::PlanOp> findSinglePlan(mlir::Operation *module);

/// The kernel translation unit of templates/README.md: the MuseCfg constants
/// and one extern "C" wrapper per muse.kernel.
mlir::LogicalResult translateToCuda(mlir::muse::PlanOp plan, llvm::raw_ostream &os);

/// The LaunchPlan the runtime interprets: buffers and launches in order, and
/// those of the backward plan next to `plan` when there is one.
mlir::FailureOr<LaunchPlan> buildLaunchPlan(mlir::muse::PlanOp plan);

/// Readable C++ launcher (driver API) printed from `plan`; `name` prefixes the
/// functions it defines (<name>_workspace_bytes, <name>_launch, and with a
/// backward plan <name>_backward_workspace_bytes, <name>_backward). It runs
/// the launches as the runtime does: a causal plan's per-level launches in a
/// loop over the far-field levels of N (then <name>_launch also takes the
/// spec's block_size and window_blocks), each on the params and grid of its
/// view.
std::string printHostLauncher(const LaunchPlan &plan, const std::string &name);

/// A C identifier from a spec name: "muse_" + name with other characters as '_'.
std::string launcherName(llvm::StringRef specName);

} // namespace muse

#endif
