//===- Acausal.cpp - Acausal MuSe over every (batch, head) ----------------===//
#include "Drivers.h"

#include "Lloyd.h"
#include "Multipole.h"
#include "Parallel.h"

#include <numeric>
#include <sstream>

namespace muse::ref::detail {

namespace {

RefStatus checkAssignments(const char *name, const std::vector<int32_t> &a,
                           int64_t heads, int64_t n, int C) {
  if (static_cast<int64_t>(a.size()) != heads * n) {
    std::ostringstream os;
    os << "muse::ref: partitions." << name << " has " << a.size()
       << " entries but needs " << heads << " heads x " << n << " = " << heads * n;
    return RefStatus::error(os.str());
  }
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] < 0 || a[i] >= C) {
      std::ostringstream os;
      os << "muse::ref: partitions." << name << "[head " << i / n << "][" << i % n
         << "] = " << a[i] << " is out of range: allowed 0.." << C - 1;
      return RefStatus::error(os.str());
    }
  return RefStatus::success();
}

/// k-means of `heads` blocks of n rows of dim D each.
std::vector<int32_t> clusterHeads(const std::vector<double> &x, int64_t heads,
                                  int64_t n, int64_t D, int C, int iters) {
  std::vector<int32_t> assign(heads * n);
  parallelFor(heads, 1, [&](int64_t h) { // each head's k-means on its own
    std::vector<double> centroids(size_t(C) * D);
    std::vector<int64_t> counts(C);
    lloydKMeans(x.data() + h * n * D, n, D, C, iters, assign.data() + h * n, centroids.data(),
                counts.data());
  });
  return assign;
}

} // namespace

RefStatus runAcausal(const MuseConfig &cfg, const RefShape &sh,
                     const std::vector<double> &x, const std::vector<double> &k,
                     const std::vector<double> &v, const Partitions *given,
                     MuseForwardResult &fwd, const BackwardInputs *bwd,
                     Gradients *grad) {
  const int64_t BH = sh.B * sh.H, BHkv = sh.B * sh.Hkv;
  Partitions &part = fwd.partitions;
  part = Partitions{};
  if (given) {
    if (given->levels != 0)
      return RefStatus::error("muse::ref: partitions.levels must be 0 for "
                              "acausal MuSe (levels are causal only)");
    if (RefStatus st = checkAssignments("query", given->query, BH, sh.N,
                                        cfg.queryClusters);
        !st)
      return st;
    if (RefStatus st =
            checkAssignments("key", given->key, BHkv, sh.M, cfg.keyClusters);
        !st)
      return st;
    part.query = given->query;
    part.key = given->key;
  } else {
    part.key = clusterHeads(k, BHkv, sh.M, sh.D, cfg.keyClusters, cfg.kmeansIters);
    part.query =
        clusterHeads(x, BH, sh.N, sh.D, cfg.queryClusters, cfg.kmeansIters);
  }

  fwd.o.assign(sh.oSize(), 0.0);
  fwd.lse.assign(sh.lseSize(), 0.0);
  fwd.queryCentroids.assign(size_t(BH) * cfg.queryClusters * sh.D, 0.0);
  fwd.queryCounts.assign(size_t(BH) * cfg.queryClusters, 0);
  if (grad) {
    grad->dq.assign(sh.qSize(), 0.0);
    grad->dk.assign(sh.kSize(), 0.0);
    grad->dv.assign(sh.vSize(), 0.0);
  }
  std::vector<int64_t> served(sh.N);
  std::iota(served.begin(), served.end(), int64_t(0));
  auto problem = [&](int64_t bh) {
    const int64_t kvh = sh.kvHeadOf(bh);
    MultipoleProblem p;
    p.D = sh.D;
    p.Dv = sh.Dv;
    p.order = cfg.order;
    p.nearClusters = cfg.nearClusters;
    p.k = k.data() + kvh * sh.M * sh.D;
    p.v = v.data() + kvh * sh.M * sh.Dv;
    p.keyCount = sh.M;
    p.keyAssign = part.key.data() + kvh * sh.M;
    p.Ck = cfg.keyClusters;
    p.members = p.x = x.data() + bh * sh.N * sh.D;
    p.memberCount = p.servedCount = sh.N;
    p.memberAssign = p.servedCluster = part.query.data() + bh * sh.N;
    p.Cq = cfg.queryClusters;
    p.served = served.data();
    return p;
  };
  // The forward of every head on its own (each writes only its slices).
  parallelFor(BH, 1, [&](int64_t bh) {
    const MultipoleProblem p = problem(bh);
    multipoleForward(p, fwd.o.data() + bh * sh.N * sh.Dv, fwd.lse.data() + bh * sh.N);
    std::vector<double> centroids;
    std::vector<int64_t> counts;
    queryCentroids(p, centroids, counts);
    std::copy(centroids.begin(), centroids.end(),
              fwd.queryCentroids.begin() + bh * cfg.queryClusters * sh.D);
    std::copy(counts.begin(), counts.end(), fwd.queryCounts.begin() + bh * cfg.queryClusters);
  });
  if (grad) {
    // Serial, in head order: dk and dv add up over the heads of a GQA group.
    for (int64_t bh = 0; bh < BH; ++bh) {
      const int64_t kvh = sh.kvHeadOf(bh);
      const MultipoleProblem p = problem(bh);
      double *dx = grad->dq.data() + bh * sh.N * sh.D;
      multipoleBackward(p, fwd.o.data() + bh * sh.N * sh.Dv, fwd.lse.data() + bh * sh.N,
                        bwd->dO->data() + bh * sh.N * sh.Dv,
                        bwd->dLse->empty() ? nullptr : bwd->dLse->data() + bh * sh.N, dx, dx,
                        grad->dk.data() + kvh * sh.M * sh.D, grad->dv.data() + kvh * sh.M * sh.Dv);
    }
  }
  return RefStatus::success();
}

} // namespace muse::ref::detail
