//===- ExactRange.h - Exact attention of one query over a key range -------===//
//
// The building block of exact attention, of the causal near window and of the
// near field: one scaled query x against keys [lo, hi), as a partial (o, lse)
// that merges with others by log-sum-exp weights.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_LIB_REFERENCE_EXACTRANGE_H
#define MUSE_LIB_REFERENCE_EXACTRANGE_H

#include <cstdint>

namespace muse::ref::detail {

double dot(const double *a, const double *b, int64_t n);

/// o[Dv], lse of x over keys lo..hi-1 (hi > lo); k rows of D, v rows of Dv.
void exactRangeForward(const double *x, const double *k, const double *v,
                       int64_t lo, int64_t hi, int64_t D, int64_t Dv, double *o,
                       double &lse);

/// Adds the gradients of this range's terms, given the final (merged) lse of
/// the query, dO, delta = dO . o_final and dLse, to dx[D], dk and dv rows.
void exactRangeBackward(const double *x, const double *k, const double *v,
                        int64_t lo, int64_t hi, int64_t D, int64_t Dv,
                        double lseFinal, const double *dO, double delta,
                        double dLse, double *dx, double *dk, double *dv);

/// Merges partial (lseP, oP) into the running (lse, o); lse = -inf is empty.
void mergePartial(double &lse, double *o, double lseP, const double *oP,
                  int64_t Dv);

} // namespace muse::ref::detail

#endif // MUSE_LIB_REFERENCE_EXACTRANGE_H
