//===- Compiler.h - Spec to CUDA source and launch plan --------------------===//
//
// The compiler pipeline in one call, for muse-gen and the runtime:
//
//   Spec ──muse-import──▶ muse.attention (MLIR, #muse.spec attribute)
//        ──muse-decompose──▶ stage ops (k-means, permute, summarize, ...)
//        ──muse-schedule──▶ tiles, warps, shared memory for the target
//        ──muse-outline──▶ muse.kernel ops + launch plan
//        ──muse-to-cuda / muse-to-host──▶ CUDA source, LaunchPlan, C++ launcher
//
// No GPU and no NVRTC are needed here; NVRTC compilation is the runtime's job.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_COMPILER_COMPILER_H
#define MUSE_COMPILER_COMPILER_H

#include "muse/Spec/Spec.h"
#include "muse/Target/Cuda/LaunchPlan.h"

#include <string>
#include <vector>

namespace muse {

/// Bumped whenever generated code changes meaning; part of every cache key.
inline constexpr const char *kGeneratorVersion = "0.1.0";

struct CompileOutput {
  bool ok = false;
  std::vector<std::string> errors; // "file:line:col: error: ..." or "error: ..."
  std::string mlir;       // muse.attention as imported (--emit=mlir)
  std::string lowered;    // after decompose, schedule and outline (--emit=lowered)
  std::string cudaSource; // the kernel translation unit (--emit=cuda)
  std::string hostSource; // C++ launcher source printed from `plan` (--emit=host)
  LaunchPlan plan;        // what the runtime interprets
};

/// Runs the whole pipeline on a validated spec. `specFile`, when given, is the
/// file the spec came from: the imported IR and its diagnostics point there.
CompileOutput compileSpec(const Spec &spec, const std::string &specFile = "");

/// The NVRTC options the generated source needs for `spec` (arch, std, defines),
/// without include paths; the runtime adds those.
std::vector<std::string> nvrtcOptions(const Spec &spec);

/// The embedded templates/ tree: (relative path, contents), sorted by path.
/// NVRTC gets them as in-memory headers; the cache key hashes them.
const std::vector<std::pair<std::string, std::string>> &embeddedTemplates();

} // namespace muse

#endif
