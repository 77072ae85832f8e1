//===- HostTypes.h - bf16/f16 rounding on the host ------------------------===//
//
// Inputs for GPU checks are generated in float, rounded to the spec's dtype
// on the host, and the reference is given exactly the rounded values (in
// double): then kernel and reference see the same numbers.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_CHECK_HOSTTYPES_H
#define MUSE_CHECK_HOSTTYPES_H

#include "muse/Spec/Spec.h"

#include <cstdint>
#include <string>
#include <vector>

namespace muse::check {

uint16_t floatToBf16(float x); // round to nearest even, NaN kept
float bf16ToFloat(uint16_t h);
uint16_t floatToHalf(float x); // round to nearest even, subnormals, overflow to inf
float halfToFloat(uint16_t h);
int64_t dtypeBytes(DType t);

/// Rounds `values` to `t`: the device bytes in `bytes`, the rounded values
/// (as double) back in `values`.
void roundTo(DType t, std::vector<double> &values, std::string &bytes);

} // namespace muse::check

#endif
