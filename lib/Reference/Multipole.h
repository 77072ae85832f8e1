//===- Multipole.h - One acausal MuSe problem (ALGORITHM.md §3, §5) -------===//
//
// A set of keys with a key partition, a set of "member" queries with a query
// partition (whose means are the centroids), and the "served" queries that
// attend: each served query has a cluster and residual r = x - centroid.
// Acausal MuSe is one such problem per head (members = served = all queries);
// every causal far-field segment is one (members = the segment's queries,
// served = the queries of its range R).
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_LIB_REFERENCE_MULTIPOLE_H
#define MUSE_LIB_REFERENCE_MULTIPOLE_H

#include <cstdint>
#include <vector>

namespace muse::ref::detail {

struct MultipoleProblem {
  int64_t D = 0, Dv = 0;
  int order = 0;
  int nearClusters = 0;
  // Keys: rows 0..keyCount-1 of k [.][D] and v [.][Dv], clusters in [0, Ck).
  const double *k = nullptr;
  const double *v = nullptr;
  int64_t keyCount = 0;
  const int32_t *keyAssign = nullptr;
  int Ck = 0;
  // Member queries (scaled) defining the centroids, clusters in [0, Cq).
  const double *members = nullptr;
  int64_t memberCount = 0;
  const int32_t *memberAssign = nullptr;
  int Cq = 0;
  // Served queries: rows served[s] of x, each in the non-empty cluster
  // servedCluster[s].
  const double *x = nullptr;
  const int64_t *served = nullptr;
  const int32_t *servedCluster = nullptr;
  int64_t servedCount = 0;
};

/// Means of the member queries per cluster, [Cq][D] (0 for empty), and counts.
void queryCentroids(const MultipoleProblem &p, std::vector<double> &centroids,
                    std::vector<int64_t> &counts);

/// Partial (o, lse) of every served query: o[s*Dv], lse[s].
void multipoleForward(const MultipoleProblem &p, double *o, double *lse);

/// Gradients given, per row of x, the final (merged) o [.][Dv], lse, dO and
/// dLse (nullptr = 0). Adds to dx (rows of x), dMembers (rows of members), dk,
/// dv (rows of k, v); all in the scaled query space.
void multipoleBackward(const MultipoleProblem &p, const double *oFinal,
                       const double *lseFinal, const double *dO,
                       const double *dLse, double *dx, double *dMembers,
                       double *dk, double *dv);

} // namespace muse::ref::detail

#endif // MUSE_LIB_REFERENCE_MULTIPOLE_H
