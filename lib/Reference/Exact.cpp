//===- Exact.cpp - Exact softmax attention in double precision ------------===//
#include "muse/Reference/Exact.h"

#include "ExactRange.h"
#include "Parallel.h"
#include "Validate.h"

namespace muse::ref {

namespace {
RefStatus validateInputs(const RefShape &shape, bool causal, double scale,
                         const std::vector<double> &q,
                         const std::vector<double> &k,
                         const std::vector<double> &v) {
  if (RefStatus st = detail::validateShape(shape, causal); !st)
    return st;
  if (RefStatus st = detail::validateScale(scale); !st)
    return st;
  return detail::validateQkv(shape, q, k, v);
}

// Forward without validation; x is the scaled q.
void forwardScaled(const RefShape &sh, bool causal, const std::vector<double> &x,
                   const std::vector<double> &k, const std::vector<double> &v,
                   ForwardResult &out) {
  out.o.assign(sh.oSize(), 0.0);
  out.lse.assign(sh.lseSize(), 0.0);
  // Rows are independent: each writes its own o row and lse entry.
  detail::parallelFor(sh.B * sh.H * sh.N, 64, [&](int64_t row) {
    const int64_t bh = row / sh.N, n = row - bh * sh.N;
    const int64_t kvh = sh.kvHeadOf(bh);
    detail::exactRangeForward(x.data() + row * sh.D, k.data() + kvh * sh.M * sh.D,
                              v.data() + kvh * sh.M * sh.Dv, 0, causal ? n + 1 : sh.M, sh.D,
                              sh.Dv, out.o.data() + row * sh.Dv, out.lse[row]);
  });
}

std::vector<double> scaled(const std::vector<double> &q, double s) {
  std::vector<double> x(q);
  for (double &e : x)
    e *= s;
  return x;
}
} // namespace

RefStatus exactForward(const RefShape &shape, bool causal, double scale,
                       const std::vector<double> &q,
                       const std::vector<double> &k,
                       const std::vector<double> &v, ForwardResult &out) {
  if (RefStatus st = validateInputs(shape, causal, scale, q, k, v); !st)
    return st;
  forwardScaled(shape, causal, scaled(q, detail::effectiveScale(scale, shape.D)), k,
                v, out);
  return RefStatus::success();
}

RefStatus exactBackward(const RefShape &shape, bool causal, double scale,
                        const std::vector<double> &q,
                        const std::vector<double> &k,
                        const std::vector<double> &v,
                        const std::vector<double> &dO,
                        const std::vector<double> &dLse, Gradients &out) {
  if (RefStatus st = validateInputs(shape, causal, scale, q, k, v); !st)
    return st;
  if (RefStatus st = detail::validateTensor("dO", dO, shape.oSize()); !st)
    return st;
  if (RefStatus st = detail::validateOptionalTensor("dLse", dLse, shape.lseSize());
      !st)
    return st;
  const RefShape &sh = shape;
  const double s = detail::effectiveScale(scale, sh.D);
  std::vector<double> x = scaled(q, s);
  ForwardResult fwd;
  forwardScaled(sh, causal, x, k, v, fwd);
  out.dq.assign(sh.qSize(), 0.0);
  out.dk.assign(sh.kSize(), 0.0);
  out.dv.assign(sh.vSize(), 0.0);
  for (int64_t bh = 0; bh < sh.B * sh.H; ++bh) {
    const int64_t kvh = sh.kvHeadOf(bh);
    const double *kh = k.data() + kvh * sh.M * sh.D;
    const double *vh = v.data() + kvh * sh.M * sh.Dv;
    for (int64_t n = 0; n < sh.N; ++n) {
      const int64_t row = bh * sh.N + n;
      const double *dOn = dO.data() + row * sh.Dv;
      detail::exactRangeBackward(
          x.data() + row * sh.D, kh, vh, 0, causal ? n + 1 : sh.M, sh.D, sh.Dv,
          fwd.lse[row], dOn, detail::dot(dOn, fwd.o.data() + row * sh.Dv, sh.Dv),
          dLse.empty() ? 0.0 : dLse[row], out.dq.data() + row * sh.D,
          out.dk.data() + kvh * sh.M * sh.D, out.dv.data() + kvh * sh.M * sh.Dv);
    }
  }
  for (double &g : out.dq)
    g *= s; // x = s q
  return RefStatus::success();
}

} // namespace muse::ref
