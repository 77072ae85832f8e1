//===- Params.h - Forward arguments to the kernels' MuseParams ------------===//
//
// The checks a forward call makes before anything is launched, and the
// translation of its arguments into the one MuseParams block every kernel
// takes (templates/muse/params.cuh). Pure host code: testable without a GPU.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_RUNTIME_PARAMS_H
#define MUSE_RUNTIME_PARAMS_H

#include "muse/Runtime/Engine.h"

struct MuseParams;

namespace muse {

/// Every workspace buffer name a plan may use (the MuseParams pointer fields).
const std::vector<std::string> &workspaceFieldNames();

/// Checks that every buffer of `plan` names a MuseParams workspace field.
Status checkPlanBuffers(const LaunchPlan &plan);

/// Validates shape, pointers, strides and workspace against the spec and plan
/// (InvalidArgument naming the bad value and what is allowed).
Status checkForwardArgs(const Spec &spec, const LaunchPlan &plan, const ForwardArgs &args);

/// checkForwardArgs, then fills `p` (strides, scale, workspace pointers at the
/// plan's buffer offsets).
Status fillParams(const Spec &spec, const LaunchPlan &plan, const ForwardArgs &args,
                  MuseParams &p);

/// fillParams, with the buffers from index `gapAt` on placed `gapBytes` later
/// than the plan's offsets (the causal backward: the forward's buffers, the
/// partition save area, then the backward's scratch).
Status fillParams(const Spec &spec, const LaunchPlan &plan, const ForwardArgs &args,
                  MuseParams &p, size_t gapAt, int64_t gapBytes);

/// Validates a backward call (shape, pointers, strides, workspace of
/// plan.backwardWorkspaceBytes) and fills `p` for the backward plan: the
/// forward's buffers at their offsets, then the backward's scratch.
Status fillBackwardParams(const Spec &spec, const LaunchPlan &plan, const BackwardArgs &args,
                          MuseParams &p);

/// The grid of one launch for `shape`, checked against CUDA's limits.
Status launchGrid(const KernelLaunch &launch, const Shape &shape, unsigned grid[3]);

} // namespace muse

#endif
