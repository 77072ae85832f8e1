//===- KMeans.h - The deterministic k-means of ALGORITHM.md §2 ------------===//
//
// Ceff = min(C, n) clusters start at c_j = x_{floor(j*n/Ceff)}; each of T
// iterations assigns every point to its nearest centroid (squared Euclidean
// distance, ties to the lowest index) and moves every non-empty centroid to the
// mean of its members (an empty one stays). Clusters >= Ceff stay empty, as in
// the GPU kernels.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_REFERENCE_KMEANS_H
#define MUSE_REFERENCE_KMEANS_H

#include "muse/Reference/Types.h"

namespace muse::ref {

/// Clusters `n` points of dimension `dim` stored row-major in `points`
/// (points.size() == n*dim) into `clusters` clusters with `iters` iterations.
RefStatus kmeans(const std::vector<double> &points, int64_t n, int64_t dim,
                 int clusters, int iters, KMeansResult &out);

} // namespace muse::ref

#endif // MUSE_REFERENCE_KMEANS_H
