//===- Exact.h - Exact softmax attention in double precision --------------===//
//
// o(q) = sum_l e^{s q.k_l} v_l / sum_l e^{s q.k_l},  lse = ln sum_l e^{s q.k_l}
// over all M keys (acausal) or keys 0..t (causal, N == M). `scale` <= 0 means
// 1/sqrt(D). Layouts are those of Types.h.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_REFERENCE_EXACT_H
#define MUSE_REFERENCE_EXACT_H

#include "muse/Reference/Types.h"

namespace muse::ref {

RefStatus exactForward(const RefShape &shape, bool causal, double scale,
                       const std::vector<double> &q,
                       const std::vector<double> &k,
                       const std::vector<double> &v, ForwardResult &out);

/// Gradients of the loss L given dO = dL/do [B,H,N,Dv] and dLse = dL/dlse
/// [B,H,N] (an empty dLse means zero).
RefStatus exactBackward(const RefShape &shape, bool causal, double scale,
                        const std::vector<double> &q,
                        const std::vector<double> &k,
                        const std::vector<double> &v,
                        const std::vector<double> &dO,
                        const std::vector<double> &dLse, Gradients &out);

} // namespace muse::ref

#endif // MUSE_REFERENCE_EXACT_H
