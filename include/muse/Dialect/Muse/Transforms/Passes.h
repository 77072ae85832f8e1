//===- Passes.h - The muse lowering passes --------------------------------===//
#ifndef MUSE_DIALECT_MUSE_TRANSFORMS_PASSES_H
#define MUSE_DIALECT_MUSE_TRANSFORMS_PASSES_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "muse/Dialect/Muse/IR/MuseDialect.h"

namespace mlir::muse {

#define GEN_PASS_DECL
#include "muse/Dialect/Muse/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "muse/Dialect/Muse/Transforms/Passes.h.inc"

/// The second argument of the __launch_bounds__ of `kernel`, launched with
/// `threads` threads, for `spec` (blocks per SM, capping registers at
/// 65536 / (threads x blocks)) as the muse.kernel's min_blocks attribute, or
/// a null attribute for none.
IntegerAttr kernelMinBlocks(Builder &b, SpecAttr spec, StringRef kernel, int64_t threads);

/// Block size of the emit kernels (templates/muse/emit.cuh kEmitThreads) and
/// the elements a block rounds (8 a thread, kEmitPerBlock): the forward and
/// backward plans size the emit grids with them.
constexpr int64_t kEmitThreads = 256;
constexpr int64_t kEmitPerBlock = 8 * kEmitThreads;

/// decompose, schedule, outline: what compileSpec runs on an imported module.
void buildMuseLoweringPipeline(OpPassManager &pm);
/// Registers the passes and the pipeline `muse-lower`.
void registerMusePipelines();

} // namespace mlir::muse

#endif
