//===- Verify.h - Run compiled kernels on random data and check them -----===//
//
// One check, used by `muse-gen verify` and by the GPU tests: random inputs
// (fresh seed unless given), rounded to the spec's dtype; the kernels run on
// the GPU with poisoned outputs; the CPU reference (double) then recomputes
// MuSe on the kernel's own partitions (the kernel's arithmetic is checked) and
// exact attention (the approximation is measured).
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_CHECK_VERIFY_H
#define MUSE_CHECK_VERIFY_H

#include "muse/Runtime/Engine.h"

#include <cstdint>
#include <string>

namespace muse::check {

enum class InputKind {
  Gaussian,      // i.i.d. N(0, 1)
  WellSeparated, // a Gaussian mixture whose clusters are far apart: k-means
                 // partitions have no near ties, so GPU and CPU must agree
};

struct VerifyOptions {
  Shape shape;          // Hkv is derived from spec.kvHeadsRatio when 0
  uint64_t seed = 0;    // 0: a fresh random seed (printed in the report)
  InputKind inputs = InputKind::Gaussian;
  bool comparePartitions = false; // also run the reference k-means and compare
  int timedRuns = 0;              // > 0: median forward time over that many runs
  bool timeOnly = false;          // skip the CPU reference (large timing shapes)
};

struct VerifyReport {
  uint64_t seed = 0;
  Shape shape;
  // The kernel against the reference on the kernel's partitions.
  double relL2VsReference = 0;   // ||o - o_ref|| / ||o_ref||
  double maxAbsVsReference = 0;  // max |o - o_ref|
  double lseMaxAbsVsReference = 0;
  // The approximation: relative squared error against exact attention.
  double relSqErrVsExact = 0;          // ||o - o_exact||^2 / ||o_exact||^2
  double referenceRelSqErrVsExact = 0; // the same for the reference's o
  // Partitions (only when comparePartitions).
  int64_t queryAssignMismatches = -1;
  int64_t keyAssignMismatches = -1;
  bool outputsFinite = true;
  double medianMs = 0;
  /// A few lines for people.
  std::string str() const;
};

/// Tolerance on relL2VsReference for the spec's input dtype: 1e-5 for f32,
/// 2e-2 for bf16 and f16 (kernels accumulate in fp32 either way;
/// the reference sees the same rounded inputs).
double referenceTolerance(const Spec &spec);

/// Builds `spec` and runs the check. Fails with NoDevice where there is no GPU.
Status verifyForward(Engine &engine, const Spec &spec, const VerifyOptions &options,
                     VerifyReport &report);

/// Causality on the GPU (ALGORITHM.md §4): two calls whose inputs agree at
/// positions <= cut and are redrawn at every later position.
struct CausalityReport {
  int64_t cut = 0;
  int64_t changedAtOrBefore = 0; // (head, position) rows <= cut whose o or lse moved a bit: must be 0
  int64_t changedAfter = 0;      // rows after cut that changed (shows the inputs did change)
  bool outputsFinite = true;
};

/// Fails with NoDevice where there is no GPU; InvalidArgument for an acausal
/// spec or a cut outside [0, N).
Status verifyCausality(Engine &engine, const Spec &spec, const Shape &shape, uint64_t seed,
                       int64_t cut, CausalityReport &report);

/// The backward (acausal specs): the forward on random inputs, then the
/// backward with random dO (and dLse unless withDLse is false), against
/// ref::museBackward on the kernel's partitions (VerifyBackward.cpp).
struct BackwardReport {
  uint64_t seed = 0;
  Shape shape;
  double dqRelL2 = 0, dkRelL2 = 0, dvRelL2 = 0; // ||g - g_ref|| / ||g_ref||
  bool outputsFinite = true;
  bool deterministic = true; // a second backward gave bit-identical dq, dk, dv
  // 16-bit specs: o (a forward with OutputType::Input) and dq, dk, dv (a
  // backward with gradType Input) in the input dtype, against the fp32 runs'
  // results rounded: elements that differ (must be 0).
  bool inputTypeChecked = false;
  int64_t inputTypeMismatches = 0;
  bool causalChecked = false; // causal specs: the causality check ran
  bool causal = false;        // gradients at positions >= N/2 ignore dO at < N/2, bit for bit
  double medianMs = 0;       // backward only, when timedRuns > 0
  std::string str() const;
};

/// Fails with NoDevice where there is no GPU. Causal specs need N == M (M is
/// set to N when not given otherwise).
Status verifyBackward(Engine &engine, const Spec &spec, const VerifyOptions &options,
                      bool withDLse, BackwardReport &report);

} // namespace muse::check

#endif
