//===- Nvrtc.h - CUDA source to cubin (and PTX) through NVRTC -------------===//
//
// The generated translation unit is compiled with the embedded templates as
// in-memory headers (no header search on disk except the CUDA toolkit's own
// include directory, for cuda_bf16.h / cuda_fp16.h), to a cubin for the exact
// sm_XY of the spec: SASS, never PTX only, so an older driver never has to
// JIT-compile PTX it may not understand.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_RUNTIME_NVRTC_H
#define MUSE_RUNTIME_NVRTC_H

#include "muse/Runtime/Engine.h"

#include <string>
#include <utility>
#include <vector>

namespace muse {

struct NvrtcRequest {
  std::string source;
  std::string programName = "muse.cu";
  /// (include name, contents), e.g. ("muse/kernels.cuh", "...").
  std::vector<std::pair<std::string, std::string>> headers;
  /// Options as given (e.g. from nvrtcOptions(spec)); -I of the CUDA include
  /// directory is appended by compileCuda.
  std::vector<std::string> options;
  bool wantCubin = true;
  bool wantPtx = false;
  /// Adds -Xptxas=-v and returns ptxas' report (registers, spills, shared
  /// memory per kernel) in `resourceUsage`.
  bool wantResourceUsage = false;
};

struct NvrtcOutput {
  std::string cubin;
  std::string ptx;
  std::string resourceUsage; // ptxas -v report, one "Function properties"/"Used" block per kernel
  std::string log;           // the full NVRTC log (warnings too)
};

/// NVRTC's version as (major, minor); (0, 0) if the query fails.
std::pair<int, int> nvrtcVersion();
/// "13.0"
std::string nvrtcVersionString();

/// The CUDA toolkit include directory holding cuda_bf16.h: $CUDA_HOME/include,
/// else /usr/local/cuda/include, else the include/ directory next to the
/// loaded libnvrtc. An error Status names every place that was tried.
Status cudaIncludeDir(std::string &dir);

/// Compiles `req`; on failure the Status (CompileError) carries the NVRTC log.
Status compileCuda(const NvrtcRequest &req, NvrtcOutput &out);

} // namespace muse

#endif
