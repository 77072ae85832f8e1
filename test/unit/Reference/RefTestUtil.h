//===- RefTestUtil.h - Random inputs, error norms, finite differences -----===//
#ifndef MUSE_TEST_UNIT_REFERENCE_REFTESTUTIL_H
#define MUSE_TEST_UNIT_REFERENCE_REFTESTUTIL_H

#include "muse/Reference/Reference.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

namespace muse::ref::test {

inline std::vector<double> gaussian(size_t n, uint64_t seed, double sigma = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(0.0, sigma);
  std::vector<double> x(n);
  for (double &e : x)
    e = dist(rng);
  return x;
}

struct Inputs {
  std::vector<double> q, k, v, dO, dLse;
};

inline Inputs randomInputs(const RefShape &sh, uint64_t seed, double sigma = 1.0) {
  Inputs in;
  in.q = gaussian(sh.qSize(), seed * 5 + 1, sigma);
  in.k = gaussian(sh.kSize(), seed * 5 + 2, sigma);
  in.v = gaussian(sh.vSize(), seed * 5 + 3);
  in.dO = gaussian(sh.oSize(), seed * 5 + 4);
  in.dLse = gaussian(sh.lseSize(), seed * 5 + 5);
  return in;
}

/// max |a - b| / max(1, max |b|): relative on large data, absolute on O(1).
inline double maxError(const std::vector<double> &a, const std::vector<double> &b) {
  EXPECT_EQ(a.size(), b.size());
  double err = 0, scale = 1;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    err = std::max(err, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return err / scale;
}

/// MuSe under `cfg` equals exact attention (causal when cfg.causal) to 1e-12:
/// the exactness invariants of ALGORITHM.md §3 and §4.
inline void expectExact(const MuseConfig &cfg, const RefShape &sh, const Inputs &in) {
  MuseForwardResult m;
  ForwardResult e;
  ASSERT_TRUE(museForward(cfg, sh, in.q, in.k, in.v, nullptr, m).ok);
  ASSERT_TRUE(exactForward(sh, cfg.causal, cfg.scale, in.q, in.k, in.v, e).ok);
  EXPECT_LT(maxError(m.o, e.o), 1e-12);
  EXPECT_LT(maxError(m.lse, e.lse), 1e-12);
}

/// ||a - b|| / ||b||.
inline double relError(const std::vector<double> &a, const std::vector<double> &b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

/// Loss L = sum dO . o + sum dLse . lse of a forward pass.
using ForwardFn = std::function<void(const std::vector<double> &q,
                                     const std::vector<double> &k,
                                     const std::vector<double> &v,
                                     std::vector<double> &o,
                                     std::vector<double> &lse)>;

/// Central finite differences of L with respect to q, k and v.
inline Gradients finiteDifferences(const ForwardFn &f, const Inputs &in,
                                   double h = 1e-5) {
  auto loss = [&](const std::vector<double> &q, const std::vector<double> &k,
                  const std::vector<double> &v) {
    std::vector<double> o, lse;
    f(q, k, v, o, lse);
    double L = 0;
    for (size_t i = 0; i < o.size(); ++i)
      L += in.dO[i] * o[i];
    for (size_t i = 0; i < lse.size() && !in.dLse.empty(); ++i)
      L += in.dLse[i] * lse[i];
    return L;
  };
  Gradients g;
  auto fd = [&](int which, std::vector<double> &out) {
    std::vector<double> q = in.q, k = in.k, v = in.v;
    std::vector<double> &x = which == 0 ? q : which == 1 ? k : v;
    out.assign(x.size(), 0.0);
    for (size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + h;
      double lp = loss(q, k, v);
      x[i] = x0 - h;
      double lm = loss(q, k, v);
      x[i] = x0;
      out[i] = (lp - lm) / (2 * h);
    }
  };
  fd(0, g.dq);
  fd(1, g.dk);
  fd(2, g.dv);
  return g;
}

inline void expectGradientsMatch(const Gradients &analytic, const Gradients &fd,
                                 double tol = 1e-6) {
  EXPECT_LT(relError(analytic.dq, fd.dq), tol) << "dq";
  EXPECT_LT(relError(analytic.dk, fd.dk), tol) << "dk";
  EXPECT_LT(relError(analytic.dv, fd.dv), tol) << "dv";
}

/// Repeats every kv head H/Hkv times: the MHA equivalent of a GQA tensor.
inline std::vector<double> repeatKv(const std::vector<double> &t, const RefShape &sh,
                                    int64_t rowLen) {
  const int64_t group = sh.H / sh.Hkv, per = sh.M * rowLen;
  std::vector<double> out;
  out.reserve(t.size() * group);
  for (int64_t b = 0; b < sh.B; ++b)
    for (int64_t h = 0; h < sh.H; ++h) {
      const double *src = t.data() + (b * sh.Hkv + h / group) * per;
      out.insert(out.end(), src, src + per);
    }
  return out;
}

} // namespace muse::ref::test

#endif // MUSE_TEST_UNIT_REFERENCE_REFTESTUTIL_H
