//===- KMeans.cpp - The public k-means entry point ------------------------===//
#include "muse/Reference/KMeans.h"

#include "Lloyd.h"
#include "Validate.h"

#include <sstream>

namespace muse::ref {

RefStatus kmeans(const std::vector<double> &points, int64_t n, int64_t dim,
                 int clusters, int iters, KMeansResult &out) {
  if (n < 1 || dim < 1) {
    std::ostringstream os;
    os << "muse::ref: kmeans needs n >= 1 points of dim >= 1, got n = " << n
       << ", dim = " << dim;
    return RefStatus::error(os.str());
  }
  if (clusters < 1 || iters < 1) {
    std::ostringstream os;
    os << "muse::ref: kmeans needs clusters >= 1 and iters >= 1, got clusters = "
       << clusters << ", iters = " << iters;
    return RefStatus::error(os.str());
  }
  if (n > (int64_t(1) << 40) / dim)
    return RefStatus::error("muse::ref: kmeans points have more than 2^40 elements");
  if (RefStatus st = detail::validateTensor("points", points, n * dim); !st)
    return st;
  out.assign.assign(n, 0);
  out.centroids.assign(size_t(clusters) * dim, 0.0);
  out.counts.assign(clusters, 0);
  out.effectiveClusters =
      detail::lloydKMeans(points.data(), n, dim, clusters, iters, out.assign.data(),
                          out.centroids.data(), out.counts.data());
  return RefStatus::success();
}

} // namespace muse::ref
