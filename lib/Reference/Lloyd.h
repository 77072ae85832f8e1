//===- Lloyd.h - The k-means loop on raw rows, for every caller -----------===//
#ifndef MUSE_LIB_REFERENCE_LLOYD_H
#define MUSE_LIB_REFERENCE_LLOYD_H

#include <cstdint>

namespace muse::ref::detail {

/// ALGORITHM.md §2 on n rows of `dim` doubles at `x` (row stride dim).
/// Writes assign[n], centroids[C*dim] (the last update; clusters >= Ceff are 0)
/// and counts[C]; returns Ceff = min(C, n). Inputs are assumed valid.
int lloydKMeans(const double *x, int64_t n, int64_t dim, int C, int iters,
                int32_t *assign, double *centroids, int64_t *counts);

/// Index of the nearest of the `C` centroids with counts > 0 (ties to the
/// lowest index); -1 when every cluster is empty.
int32_t nearestNonEmpty(const double *x, int64_t dim, int C,
                        const double *centroids, const int64_t *counts);

} // namespace muse::ref::detail

#endif // MUSE_LIB_REFERENCE_LLOYD_H
