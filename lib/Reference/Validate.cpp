//===- Validate.cpp - Input checks shared by every entry point ------------===//
#include "Validate.h"

#include <cmath>
#include <sstream>

namespace muse::ref::detail {

namespace {
// Keeps every element count far from int64 overflow and every per-head index
// within int32 partitions.
constexpr int64_t kMaxExtent = int64_t(1) << 31;
constexpr int64_t kMaxElements = int64_t(1) << 40;

RefStatus checkExtent(const char *name, int64_t value) {
  if (value < 1 || value >= kMaxExtent) {
    std::ostringstream os;
    os << "muse::ref: shape." << name << " = " << value
       << " is out of range: allowed 1.." << (kMaxExtent - 1);
    return RefStatus::error(os.str());
  }
  return RefStatus::success();
}

RefStatus checkProduct(const char *name, std::initializer_list<int64_t> dims) {
  int64_t total = 1;
  for (int64_t d : dims) {
    if (total > kMaxElements / d)
      return RefStatus::error(std::string("muse::ref: tensor ") + name +
                              " has more than 2^40 elements");
    total *= d;
  }
  return RefStatus::success();
}
} // namespace

RefStatus validateShape(const RefShape &s, bool causal) {
  const std::pair<const char *, int64_t> extents[] = {
      {"B", s.B}, {"H", s.H}, {"Hkv", s.Hkv}, {"N", s.N},
      {"M", s.M}, {"D", s.D}, {"Dv", s.Dv}};
  for (auto &[name, value] : extents)
    if (RefStatus st = checkExtent(name, value); !st)
      return st;
  if (s.H % s.Hkv != 0) {
    std::ostringstream os;
    os << "muse::ref: H = " << s.H << " is not a multiple of Hkv = " << s.Hkv
       << ": every kv head must serve the same number of query heads";
    return RefStatus::error(os.str());
  }
  if (causal && s.N != s.M) {
    std::ostringstream os;
    os << "muse::ref: causal attention needs N == M (self-attention), got N = "
       << s.N << ", M = " << s.M;
    return RefStatus::error(os.str());
  }
  for (RefStatus st : {checkProduct("q", {s.B, s.H, s.N, s.D}),
                       checkProduct("k", {s.B, s.Hkv, s.M, s.D}),
                       checkProduct("v", {s.B, s.Hkv, s.M, s.Dv}),
                       checkProduct("o", {s.B, s.H, s.N, s.Dv})})
    if (!st)
      return st;
  return RefStatus::success();
}

RefStatus validateTensor(const char *name, const std::vector<double> &t,
                         int64_t expected) {
  if (static_cast<int64_t>(t.size()) != expected) {
    std::ostringstream os;
    os << "muse::ref: " << name << " has " << t.size()
       << " elements but the shape needs " << expected;
    return RefStatus::error(os.str());
  }
  for (size_t i = 0; i < t.size(); ++i)
    if (!std::isfinite(t[i])) {
      std::ostringstream os;
      os << "muse::ref: " << name << "[" << i << "] = " << t[i]
         << " is not finite: only finite values are allowed";
      return RefStatus::error(os.str());
    }
  return RefStatus::success();
}

RefStatus validateQkv(const RefShape &shape, const std::vector<double> &q,
                      const std::vector<double> &k, const std::vector<double> &v) {
  for (RefStatus st : {validateTensor("q", q, shape.qSize()), validateTensor("k", k, shape.kSize()),
                       validateTensor("v", v, shape.vSize())})
    if (!st)
      return st;
  return RefStatus::success();
}

RefStatus validateOptionalTensor(const char *name, const std::vector<double> &t,
                                 int64_t expected) {
  if (t.empty())
    return RefStatus::success();
  return validateTensor(name, t, expected);
}

RefStatus validateScale(double scale) {
  if (!std::isfinite(scale))
    return RefStatus::error("muse::ref: scale is not finite: give a positive "
                            "finite scale, or <= 0 for 1/sqrt(D)");
  return RefStatus::success();
}

namespace {
RefStatus atLeast(const char *field, int value, int lo) {
  if (value >= lo)
    return RefStatus::success();
  std::ostringstream os;
  os << "muse::ref: " << field << " = " << value << " is out of range: allowed >= "
     << lo;
  return RefStatus::error(os.str());
}
} // namespace

RefStatus validateConfig(const MuseConfig &c, const RefShape &shape) {
  for (RefStatus st : {atLeast("query_clusters", c.queryClusters, 1),
                       atLeast("key_clusters", c.keyClusters, 1),
                       atLeast("kmeans_iters", c.kmeansIters, 1)})
    if (!st)
      return st;
  if (c.order != 0 && c.order != 1) {
    std::ostringstream os;
    os << "muse::ref: order = " << c.order
       << " is not supported: allowed 0 (monopole) or 1 (dipole)";
    return RefStatus::error(os.str());
  }
  if (c.nearClusters < 0 || c.nearClusters > c.keyClusters) {
    std::ostringstream os;
    os << "muse::ref: near_clusters = " << c.nearClusters
       << " is out of range: allowed 0..key_clusters (" << c.keyClusters << ")";
    return RefStatus::error(os.str());
  }
  if (c.causal) {
    if (RefStatus st = atLeast("block_size", c.blockSize, 1); !st)
      return st;
    if (RefStatus st = atLeast("window_blocks", c.windowBlocks, 1); !st)
      return st;
  }
  if (RefStatus st = validateScale(c.scale); !st)
    return st;
  return validateShape(shape, c.causal);
}

double effectiveScale(double scale, int64_t D) {
  return scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(D));
}

} // namespace muse::ref::detail
