//===- Muse.h - MuSe forward and backward in double precision -------------===//
//
// museForward computes ALGORITHM.md §3 (acausal) or §4 (causal, N == M) for
// every (batch, head). Queries are scaled first (x = s*q) and clustered in that
// space; keys are clustered per kv head.
//
// Partitions: pass nullptr to run k-means, or the partitions of another
// implementation (e.g. a GPU kernel's) to compute MuSe on exactly those; the
// query centroids are then the means of the given query clusters. See
// Partitions in Types.h for the layouts.
//
// museBackward gives dq, dk, dv with the partitions held fixed (those given, or
// the k-means ones of the forward pass) and gradients flowing through the query
// centroids (each member of a cluster receives G_i / |i|).
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_REFERENCE_MUSE_H
#define MUSE_REFERENCE_MUSE_H

#include "muse/Reference/Types.h"

namespace muse::ref {

RefStatus museForward(const MuseConfig &config, const RefShape &shape,
                      const std::vector<double> &q,
                      const std::vector<double> &k,
                      const std::vector<double> &v,
                      const Partitions *partitions, MuseForwardResult &out);

/// dO [B,H,N,Dv]; dLse [B,H,N] or empty (zero).
RefStatus museBackward(const MuseConfig &config, const RefShape &shape,
                       const std::vector<double> &q,
                       const std::vector<double> &k,
                       const std::vector<double> &v,
                       const std::vector<double> &dO,
                       const std::vector<double> &dLse,
                       const Partitions *partitions, Gradients &out);

/// Number of causal far-field levels for a sequence of n positions:
/// the bit length of max(0, ceil(n/S) - w).
int causalLevels(int64_t n, int blockSize, int windowBlocks);

} // namespace muse::ref

#endif // MUSE_REFERENCE_MUSE_H
