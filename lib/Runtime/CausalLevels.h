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

/// The forward's saved partitions of every level, which the causal backward
/// restores level by level (templates/README.md "Backward (causal)"): i32
/// [levels, B*H, N] member clusters, [levels, B*Hkv, N] key clusters and
/// [levels, B*H, N] served clusters (the reference's Partitions layout, what
/// causal_export writes). It lies right after the plan's forward buffers.
int64_t causalSaveBytes(const Shape &shape, int64_t blockSize, int64_t windowBlocks);

/// Points p.out_query / out_key / out_served at the save area that starts
/// `offset` bytes into `workspace`.
void bindCausalSave(const Shape &shape, int64_t blockSize, int64_t windowBlocks, void *workspace,
                    int64_t offset, MuseParams &p);

} // namespace muse

#endif
