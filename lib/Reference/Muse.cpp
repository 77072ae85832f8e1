//===- Muse.cpp - Public MuSe entry points: validate, scale, dispatch -----===//
#include "muse/Reference/Muse.h"

#include "Drivers.h"
#include "Validate.h"

namespace muse::ref {

namespace {
RefStatus validateInputs(const MuseConfig &cfg, const RefShape &shape,
                         const std::vector<double> &q,
                         const std::vector<double> &k,
                         const std::vector<double> &v) {
  if (RefStatus st = detail::validateConfig(cfg, shape); !st)
    return st;
  return detail::validateQkv(shape, q, k, v);
}

RefStatus run(const MuseConfig &cfg, const RefShape &shape,
              const std::vector<double> &q, const std::vector<double> &k,
              const std::vector<double> &v, const Partitions *partitions,
              MuseForwardResult &fwd, const detail::BackwardInputs *bwd,
              Gradients *grad) {
  const double s = detail::effectiveScale(cfg.scale, shape.D);
  std::vector<double> x(q);
  for (double &e : x)
    e *= s; // queries are clustered and attend after scaling
  RefStatus st =
      cfg.causal
          ? detail::runCausal(cfg, shape, x, k, v, partitions, fwd, bwd, grad)
          : detail::runAcausal(cfg, shape, x, k, v, partitions, fwd, bwd, grad);
  if (st && grad)
    for (double &g : grad->dq)
      g *= s;
  return st;
}
} // namespace

RefStatus museForward(const MuseConfig &config, const RefShape &shape,
                      const std::vector<double> &q,
                      const std::vector<double> &k,
                      const std::vector<double> &v,
                      const Partitions *partitions, MuseForwardResult &out) {
  if (RefStatus st = validateInputs(config, shape, q, k, v); !st)
    return st;
  return run(config, shape, q, k, v, partitions, out, nullptr, nullptr);
}

RefStatus museBackward(const MuseConfig &config, const RefShape &shape,
                       const std::vector<double> &q,
                       const std::vector<double> &k,
                       const std::vector<double> &v,
                       const std::vector<double> &dO,
                       const std::vector<double> &dLse,
                       const Partitions *partitions, Gradients &out) {
  if (RefStatus st = validateInputs(config, shape, q, k, v); !st)
    return st;
  if (RefStatus st = detail::validateTensor("dO", dO, shape.oSize()); !st)
    return st;
  if (RefStatus st = detail::validateOptionalTensor("dLse", dLse, shape.lseSize());
      !st)
    return st;
  MuseForwardResult fwd;
  detail::BackwardInputs bwd{&dO, &dLse};
  return run(config, shape, q, k, v, partitions, fwd, &bwd, &out);
}

} // namespace muse::ref
