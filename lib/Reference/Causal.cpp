//===- Causal.cpp - Causal MuSe: exact window + dyadic far field ----------===//
//
// ALGORITHM.md §4. Every far-field segment L is an independent acausal problem
// (Multipole.h) whose keys, key partition and query centroids come from L
// only; the queries it serves are later than L, so nothing flows from the
// future. Partials merge in a fixed order (window, then levels ascending), so
// a query's output does not depend on any later position, bit for bit.
//
//===----------------------------------------------------------------------===//
#include "Drivers.h"

#include "ExactRange.h"
#include "Lloyd.h"
#include "Multipole.h"
#include "Parallel.h"
#include "muse/Reference/Muse.h"

#include <algorithm>
#include <limits>
#include <map>
#include <sstream>

namespace muse::ref {

int causalLevels(int64_t n, int blockSize, int windowBlocks) {
  if (n < 1 || blockSize < 1 || windowBlocks < 1)
    return 0;
  int64_t maxP = (n + blockSize - 1) / blockSize - windowBlocks;
  int levels = 0;
  while (maxP > 0) {
    ++levels;
    maxP >>= 1;
  }
  return levels;
}

namespace detail {

namespace {

/// One far-field segment that serves at least one query (same for every head).
struct Segment {
  int level;
  int64_t begin, len;         // positions [begin, begin + len)
  std::vector<int64_t> served; // query positions, ascending
};

std::vector<Segment> segments(int64_t N, int64_t S, int64_t w) {
  std::map<std::pair<int, int64_t>, Segment> byKey; // (level, first block)
  for (int64_t t = 0; t < N; ++t) {
    const int64_t P = t / S - w + 1;
    for (int l = 0; P > 0 && (P >> l) > 0; ++l) {
      if (!((P >> l) & 1))
        continue;
      const int64_t first = (P >> (l + 1)) << (l + 1);
      Segment &seg = byKey[{l, first}];
      seg.level = l;
      seg.begin = first * S;
      seg.len = (int64_t(1) << l) * S;
      seg.served.push_back(t);
    }
  }
  std::vector<Segment> out;
  for (auto &kv : byKey) // levels ascending, then segments ascending
    out.push_back(std::move(kv.second));
  return out;
}

int64_t at(int level, int64_t heads, int64_t head, int64_t N, int64_t pos) {
  return (int64_t(level) * heads + head) * N + pos;
}

/// The problem of segment `seg` for flat query head bh (everything but the
/// served clusters, which the caller sets).
MultipoleProblem segmentProblem(const MuseConfig &cfg, const RefShape &sh,
                                const std::vector<double> &x,
                                const std::vector<double> &k,
                                const std::vector<double> &v,
                                const Partitions &part, const Segment &seg,
                                int64_t bh) {
  const int64_t N = sh.N, kvh = sh.kvHeadOf(bh);
  MultipoleProblem p;
  p.D = sh.D;
  p.Dv = sh.Dv;
  p.order = cfg.order;
  p.nearClusters = cfg.nearClusters;
  p.k = k.data() + (kvh * N + seg.begin) * sh.D;
  p.v = v.data() + (kvh * N + seg.begin) * sh.Dv;
  p.keyCount = seg.len;
  p.keyAssign =
      part.key.data() + at(seg.level, sh.B * sh.Hkv, kvh, N, seg.begin);
  p.Ck = static_cast<int>(std::min<int64_t>(cfg.keyClusters, seg.len));
  p.members = x.data() + (bh * N + seg.begin) * sh.D;
  p.memberCount = seg.len;
  p.memberAssign = part.query.data() + at(seg.level, sh.B * sh.H, bh, N, seg.begin);
  p.Cq = static_cast<int>(std::min<int64_t>(cfg.queryClusters, seg.len));
  p.x = x.data() + bh * N * sh.D;
  p.served = seg.served.data();
  p.servedCount = static_cast<int64_t>(seg.served.size());
  return p;
}

RefStatus rangeError(const char *field, int level, int64_t head, int64_t pos,
                     int32_t value, int C, const char *extra = "") {
  std::ostringstream os;
  os << "muse::ref: partitions." << field << "[level " << level << "][head "
     << head << "][" << pos << "] = " << value << " is out of range: allowed 0.."
     << C - 1 << extra;
  return RefStatus::error(os.str());
}

/// Builds the partitions by k-means, or checks the given ones where they apply.
RefStatus preparePartitions(const MuseConfig &cfg, const RefShape &sh,
                            const std::vector<double> &x,
                            const std::vector<double> &k,
                            const std::vector<double> &v, int levels,
                            const std::vector<Segment> &segs,
                            const Partitions *given, Partitions &part) {
  const int64_t N = sh.N, BH = sh.B * sh.H, BHkv = sh.B * sh.Hkv;
  if (given) {
    const std::pair<const char *, std::pair<size_t, int64_t>> sizes[] = {
        {"key", {given->key.size(), BHkv}},
        {"query", {given->query.size(), BH}},
        {"served", {given->served.size(), BH}}};
    if (given->levels != levels) {
      std::ostringstream os;
      os << "muse::ref: partitions.levels = " << given->levels << " but N = " << N
         << ", block_size = " << cfg.blockSize << ", window_blocks = "
         << cfg.windowBlocks << " give " << levels << " causal levels";
      return RefStatus::error(os.str());
    }
    for (auto &[name, sz] : sizes)
      if (int64_t(sz.first) != int64_t(levels) * sz.second * N) {
        std::ostringstream os;
        os << "muse::ref: partitions." << name << " has " << sz.first
           << " entries but needs levels x heads x N = " << levels << " x "
           << sz.second << " x " << N;
        return RefStatus::error(os.str());
      }
    part = *given;
  } else {
    part = Partitions{};
    part.levels = levels;
    part.key.assign(size_t(levels) * BHkv * N, -1);
    part.query.assign(size_t(levels) * BH * N, -1);
    part.served.assign(size_t(levels) * BH * N, -1);
  }

  std::vector<double> centroids;
  std::vector<int64_t> counts;
  for (const Segment &seg : segs) {
    const int Ck = static_cast<int>(std::min<int64_t>(cfg.keyClusters, seg.len));
    const int Cq = static_cast<int>(std::min<int64_t>(cfg.queryClusters, seg.len));
    // One head's partition of the segment on one side: k-means over the
    // segment's points, or a range check of the given partition.
    auto partition = [&](const char *side, std::vector<int32_t> &assign,
                         const std::vector<double> &points, int64_t heads, int64_t head,
                         int C) -> RefStatus {
      int32_t *a = assign.data() + at(seg.level, heads, head, N, seg.begin);
      if (!given) {
        centroids.resize(size_t(C) * sh.D);
        counts.resize(C);
        lloydKMeans(points.data() + (head * N + seg.begin) * sh.D, seg.len, sh.D, C,
                    cfg.kmeansIters, a, centroids.data(), counts.data());
        return RefStatus::success();
      }
      for (int64_t t = 0; t < seg.len; ++t)
        if (a[t] < 0 || a[t] >= C)
          return rangeError(side, seg.level, head, seg.begin + t, a[t], C);
      return RefStatus::success();
    };
    for (int64_t hk = 0; hk < BHkv; ++hk)
      if (RefStatus st = partition("key", part.key, k, BHkv, hk, Ck); !st)
        return st;
    for (int64_t bh = 0; bh < BH; ++bh) {
      if (RefStatus st = partition("query", part.query, x, BH, bh, Cq); !st)
        return st;
      // Served queries: nearest centroid (means of the members), or checked.
      MultipoleProblem p = segmentProblem(cfg, sh, x, k, v, part, seg, bh);
      queryCentroids(p, centroids, counts);
      int32_t *s = part.served.data() + at(seg.level, BH, bh, N, 0);
      for (int64_t t : seg.served) {
        if (!given) {
          s[t] = nearestNonEmpty(x.data() + (bh * N + t) * sh.D, sh.D, Cq,
                                 centroids.data(), counts.data());
        } else if (s[t] < 0 || s[t] >= Cq || counts[s[t]] == 0) {
          return rangeError("served", seg.level, bh, t, s[t], Cq,
                            " and must name a non-empty query cluster of its "
                            "segment");
        }
      }
    }
  }
  return RefStatus::success();
}

} // namespace

RefStatus runCausal(const MuseConfig &cfg, const RefShape &sh,
                    const std::vector<double> &x, const std::vector<double> &k,
                    const std::vector<double> &v, const Partitions *given,
                    MuseForwardResult &fwd, const BackwardInputs *bwd,
                    Gradients *grad) {
  const int64_t N = sh.N, S = cfg.blockSize, w = cfg.windowBlocks;
  const int64_t BH = sh.B * sh.H;
  const int levels = causalLevels(N, cfg.blockSize, cfg.windowBlocks);
  const std::vector<Segment> segs = segments(N, S, w);
  if (RefStatus st =
          preparePartitions(cfg, sh, x, k, v, levels, segs, given, fwd.partitions);
      !st)
    return st;
  const Partitions &part = fwd.partitions;
  fwd.queryCentroids.clear();
  fwd.queryCounts.clear();
  fwd.o.assign(sh.oSize(), 0.0);
  fwd.lse.assign(sh.lseSize(), -std::numeric_limits<double>::infinity());

  auto windowBegin = [&](int64_t t) { return std::max<int64_t>(0, (t / S - w + 1) * S); };
  // Every head on its own: the window and its segments' partials write only
  // the head's rows of o and lse.
  parallelFor(BH, 1, [&](int64_t bh) {
    std::vector<double> oPart, lsePart;
    std::vector<int32_t> servedCluster;
    const int64_t kvh = sh.kvHeadOf(bh);
    const double *kh = k.data() + kvh * N * sh.D;
    const double *vh = v.data() + kvh * N * sh.Dv;
    double *o = fwd.o.data() + bh * N * sh.Dv;
    double *lse = fwd.lse.data() + bh * N;
    for (int64_t t = 0; t < N; ++t)
      exactRangeForward(x.data() + (bh * N + t) * sh.D, kh, vh, windowBegin(t),
                        t + 1, sh.D, sh.Dv, o + t * sh.Dv, lse[t]);
    for (const Segment &seg : segs) {
      MultipoleProblem p = segmentProblem(cfg, sh, x, k, v, part, seg, bh);
      const int32_t *s = part.served.data() + at(seg.level, BH, bh, N, 0);
      servedCluster.clear();
      for (int64_t t : seg.served)
        servedCluster.push_back(s[t]);
      p.servedCluster = servedCluster.data();
      oPart.resize(seg.served.size() * sh.Dv);
      lsePart.resize(seg.served.size());
      multipoleForward(p, oPart.data(), lsePart.data());
      for (size_t i = 0; i < seg.served.size(); ++i) {
        const int64_t t = seg.served[i];
        mergePartial(lse[t], o + t * sh.Dv, lsePart[i], oPart.data() + i * sh.Dv,
                     sh.Dv);
      }
    }
  });
  if (!grad)
    return RefStatus::success();

  // Backward: every partial sees the merged (o, lse), as in split-KV attention.
  grad->dq.assign(sh.qSize(), 0.0);
  grad->dk.assign(sh.kSize(), 0.0);
  grad->dv.assign(sh.vSize(), 0.0);
  std::vector<int32_t> servedCluster;
  for (int64_t bh = 0; bh < BH; ++bh) { // serial: dk, dv add up over a GQA group
    const int64_t kvh = sh.kvHeadOf(bh);
    const double *o = fwd.o.data() + bh * N * sh.Dv;
    const double *lse = fwd.lse.data() + bh * N;
    const double *dO = bwd->dO->data() + bh * N * sh.Dv;
    const double *dLse = bwd->dLse->empty() ? nullptr : bwd->dLse->data() + bh * N;
    double *dx = grad->dq.data() + bh * N * sh.D;
    double *dk = grad->dk.data() + kvh * N * sh.D;
    double *dv = grad->dv.data() + kvh * N * sh.Dv;
    for (int64_t t = 0; t < N; ++t)
      exactRangeBackward(x.data() + (bh * N + t) * sh.D, k.data() + kvh * N * sh.D,
                         v.data() + kvh * N * sh.Dv, windowBegin(t), t + 1, sh.D,
                         sh.Dv, lse[t], dO + t * sh.Dv,
                         dot(dO + t * sh.Dv, o + t * sh.Dv, sh.Dv),
                         dLse ? dLse[t] : 0.0, dx + t * sh.D, dk, dv);
    for (const Segment &seg : segs) {
      MultipoleProblem p = segmentProblem(cfg, sh, x, k, v, part, seg, bh);
      const int32_t *s = part.served.data() + at(seg.level, BH, bh, N, 0);
      servedCluster.clear();
      for (int64_t t : seg.served)
        servedCluster.push_back(s[t]);
      p.servedCluster = servedCluster.data();
      multipoleBackward(p, o, lse, dO, dLse, dx, dx + seg.begin * sh.D,
                        dk + seg.begin * sh.D, dv + seg.begin * sh.Dv);
    }
  }
  return RefStatus::success();
}

} // namespace detail
} // namespace muse::ref
