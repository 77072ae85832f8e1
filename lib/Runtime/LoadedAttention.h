//===- LoadedAttention.h - A compiled spec loaded into a CUDA context -----===//
#ifndef MUSE_LIB_RUNTIME_LOADEDATTENTION_H
#define MUSE_LIB_RUNTIME_LOADEDATTENTION_H

#include "muse/Runtime/Engine.h"

#include <cuda.h>

#include <memory>

namespace muse {

/// The current CUDA context, or the primary context of device 0 (retained
/// and made current) when there is none. NoDevice without a driver or GPU.
Status currentContext(CUcontext &ctx);

/// Loads the cubin into `ctx`, checks the device's compute capability against
/// the spec's arch, and resolves every kernel of the plan.
std::shared_ptr<Attention> loadAttention(std::shared_ptr<const CompiledSpec> compiled,
                                         CUcontext ctx, Status &status);

} // namespace muse

#endif
