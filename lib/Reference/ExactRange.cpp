//===- ExactRange.cpp - Exact attention of one query over a key range -----===//
#include "ExactRange.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace muse::ref::detail {

double dot(const double *a, const double *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i)
    s += a[i] * b[i];
  return s;
}

void exactRangeForward(const double *x, const double *k, const double *v,
                       int64_t lo, int64_t hi, int64_t D, int64_t Dv, double *o,
                       double &lse) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t l = lo; l < hi; ++l)
    m = std::max(m, dot(x, k + l * D, D));
  std::fill(o, o + Dv, 0.0);
  double z = 0;
  for (int64_t l = lo; l < hi; ++l) {
    double w = std::exp(dot(x, k + l * D, D) - m);
    z += w;
    const double *vl = v + l * Dv;
    for (int64_t e = 0; e < Dv; ++e)
      o[e] += w * vl[e];
  }
  for (int64_t e = 0; e < Dv; ++e)
    o[e] /= z;
  lse = m + std::log(z);
}

void exactRangeBackward(const double *x, const double *k, const double *v,
                        int64_t lo, int64_t hi, int64_t D, int64_t Dv,
                        double lseFinal, const double *dO, double delta,
                        double dLse, double *dx, double *dk, double *dv) {
  for (int64_t l = lo; l < hi; ++l) {
    const double *kl = k + l * D;
    const double *vl = v + l * Dv;
    double p = std::exp(dot(x, kl, D) - lseFinal);
    double g = p * (dot(dO, vl, Dv) - delta + dLse); // d loss / d logit
    for (int64_t d = 0; d < D; ++d) {
      dx[d] += g * kl[d];
      dk[l * D + d] += g * x[d];
    }
    for (int64_t e = 0; e < Dv; ++e)
      dv[l * Dv + e] += p * dO[e];
  }
}

void mergePartial(double &lse, double *o, double lseP, const double *oP,
                  int64_t Dv) {
  if (lseP == -std::numeric_limits<double>::infinity())
    return;
  if (lse == -std::numeric_limits<double>::infinity()) {
    lse = lseP;
    std::copy(oP, oP + Dv, o);
    return;
  }
  double m = std::max(lse, lseP);
  double a = std::exp(lse - m), b = std::exp(lseP - m);
  double total = m + std::log(a + b);
  double wa = a / (a + b), wb = b / (a + b);
  for (int64_t e = 0; e < Dv; ++e)
    o[e] = wa * o[e] + wb * oP[e];
  lse = total;
}

} // namespace muse::ref::detail
