//===- Lloyd.cpp - The k-means loop on raw rows ---------------------------===//
#include "Lloyd.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace muse::ref::detail {

namespace {
double squaredDistance(const double *a, const double *b, int64_t dim) {
  double s = 0;
  for (int64_t d = 0; d < dim; ++d) {
    double t = a[d] - b[d];
    s += t * t;
  }
  return s;
}
} // namespace

int lloydKMeans(const double *x, int64_t n, int64_t dim, int C, int iters,
                int32_t *assign, double *centroids, int64_t *counts) {
  const int ceff = static_cast<int>(std::min<int64_t>(C, n));
  std::fill(centroids, centroids + int64_t(C) * dim, 0.0);
  std::fill(counts, counts + C, int64_t(0));
  for (int j = 0; j < ceff; ++j) {
    const double *src = x + (int64_t(j) * n / ceff) * dim;
    std::copy(src, src + dim, centroids + int64_t(j) * dim);
  }
  std::vector<double> sums(size_t(ceff) * dim);
  for (int t = 0; t < iters; ++t) {
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(counts, counts + C, int64_t(0));
    for (int64_t p = 0; p < n; ++p) {
      const double *xp = x + p * dim;
      int best = 0;
      double bestDist = std::numeric_limits<double>::infinity();
      for (int j = 0; j < ceff; ++j) {
        double dist = squaredDistance(xp, centroids + int64_t(j) * dim, dim);
        if (dist < bestDist) { // strict: ties keep the lowest index
          bestDist = dist;
          best = j;
        }
      }
      assign[p] = best;
      ++counts[best];
      double *s = sums.data() + int64_t(best) * dim;
      for (int64_t d = 0; d < dim; ++d)
        s[d] += xp[d];
    }
    for (int j = 0; j < ceff; ++j) {
      if (counts[j] == 0)
        continue; // an empty cluster keeps its centroid
      double inv = 1.0 / double(counts[j]);
      for (int64_t d = 0; d < dim; ++d)
        centroids[int64_t(j) * dim + d] = sums[int64_t(j) * dim + d] * inv;
    }
  }
  return ceff;
}

int32_t nearestNonEmpty(const double *x, int64_t dim, int C,
                        const double *centroids, const int64_t *counts) {
  int32_t best = -1;
  double bestDist = std::numeric_limits<double>::infinity();
  for (int j = 0; j < C; ++j) {
    if (counts[j] == 0)
      continue;
    double dist = squaredDistance(x, centroids + int64_t(j) * dim, dim);
    if (best < 0 || dist < bestDist) {
      bestDist = dist;
      best = j;
    }
  }
  return best;
}

} // namespace muse::ref::detail
