//===- CausalLevels.h - The per-level views of a causal launch plan -------===//
//
// ALGORITHM.md §4: at level ℓ, segment a owns the keys and member queries of
// blocks [a 2^{ℓ+1}, a 2^{ℓ+1} + 2^ℓ) and serves the queries of blocks
// [a 2^{ℓ+1} + 2^ℓ + w - 1, (a+1) 2^{ℓ+1} + w - 1). The runtime runs the
// plan's per-level launches once per level; these helpers give the level's
// geometry and the MuseParams / Shape each launch view sees
// (templates/muse/params.cuh, LaunchPlan.h LaunchView). Pure host code.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_LIB_RUNTIME_CAUSALLEVELS_H
#define MUSE_LIB_RUNTIME_CAUSALLEVELS_H

#include "muse/Target/Cuda/LaunchPlan.h"

#include <cstdint>

struct MuseParams;

namespace muse {

struct LevelGeometry {
  int level = 0;
  int64_t segments = 0;   // segments that serve at least one query
  int64_t length = 0;     // 2^ℓ S positions per segment
  int64_t stride = 0;     // 2^{ℓ+1} S positions between segments
  int64_t servedBase = 0; // (2^ℓ + w - 1) S: first served position of segment 0
};

/// Far-field levels for n positions: the bit length of max(0, ceil(n/S) - w).
int causalLevelCount(int64_t n, int64_t blockSize, int64_t windowBlocks);

LevelGeometry levelGeometry(int64_t n, int64_t blockSize, int64_t windowBlocks, int level);

/// The params and shape a launch with `view` sees at level `g` (Full: the
/// base unchanged). valueDim is the spec's Dv (rows of the partial o).
void levelView(LaunchView view, const LevelGeometry &g, const MuseParams &base,
               const Shape &shape, int64_t valueDim, MuseParams &p, Shape &s);

} // namespace muse

#endif
