//===- Validate.h - Input checks shared by every entry point --------------===//
#ifndef MUSE_LIB_REFERENCE_VALIDATE_H
#define MUSE_LIB_REFERENCE_VALIDATE_H

#include "muse/Reference/Types.h"

namespace muse::ref::detail {

/// Every extent >= 1, H % Hkv == 0, N == M when causal, sizes addressable.
RefStatus validateShape(const RefShape &shape, bool causal);
/// `name` has exactly `expected` elements, all finite.
RefStatus validateTensor(const char *name, const std::vector<double> &t,
                         int64_t expected);
/// q, k and v sized for `shape` (validateTensor each, in that order).
RefStatus validateQkv(const RefShape &shape, const std::vector<double> &q,
                      const std::vector<double> &k, const std::vector<double> &v);
/// Like validateTensor, but an empty vector is allowed (means zero).
RefStatus validateOptionalTensor(const char *name, const std::vector<double> &t,
                                 int64_t expected);
/// Scale is finite; <= 0 selects the default.
RefStatus validateScale(double scale);
RefStatus validateConfig(const MuseConfig &config, const RefShape &shape);
double effectiveScale(double scale, int64_t D);

} // namespace muse::ref::detail

#endif // MUSE_LIB_REFERENCE_VALIDATE_H
