//===- Drivers.h - Acausal and causal MuSe over every (batch, head) -------===//
//
// Both take validated inputs with the queries already scaled (x = s q), build
// or check the partitions, run the forward pass and, when `grad` is given, the
// backward pass (gradients with respect to x, k, v).
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_LIB_REFERENCE_DRIVERS_H
#define MUSE_LIB_REFERENCE_DRIVERS_H

#include "muse/Reference/Types.h"

namespace muse::ref::detail {

struct BackwardInputs {
  const std::vector<double> *dO = nullptr;
  const std::vector<double> *dLse = nullptr; // empty = 0
};

RefStatus runAcausal(const MuseConfig &cfg, const RefShape &sh,
                     const std::vector<double> &x, const std::vector<double> &k,
                     const std::vector<double> &v, const Partitions *given,
                     MuseForwardResult &fwd, const BackwardInputs *bwd,
                     Gradients *grad);

RefStatus runCausal(const MuseConfig &cfg, const RefShape &sh,
                    const std::vector<double> &x, const std::vector<double> &k,
                    const std::vector<double> &v, const Partitions *given,
                    MuseForwardResult &fwd, const BackwardInputs *bwd,
                    Gradients *grad);

} // namespace muse::ref::detail

#endif // MUSE_LIB_REFERENCE_DRIVERS_H
