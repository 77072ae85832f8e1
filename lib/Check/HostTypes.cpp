#include "muse/Check/HostTypes.h"

#include <cmath>
#include <cstring>

namespace muse::check {

uint16_t floatToBf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (std::isnan(x))
    return static_cast<uint16_t>((u >> 16) | 0x40);
  uint32_t rounding = 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

float bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

uint16_t floatToHalf(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  uint32_t absu = u & 0x7fffffff;
  if (absu > 0x7f800000) // NaN
    return static_cast<uint16_t>(sign | 0x7e00);
  if (absu >= 0x477ff000) // rounds to >= 65520: infinity
    return static_cast<uint16_t>(sign | 0x7c00);
  if (absu < 0x38800000) { // below the smallest normal half (2^-14): subnormal
    // value = m * 2^-24 with m rounded to nearest even
    float a;
    std::memcpy(&a, &absu, 4);
    float scaled = a * 16777216.0f; // 2^24, exact
    float r = std::nearbyint(scaled); // default rounding: to nearest even
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(r));
  }
  uint32_t exp = ((absu >> 23) - 127 + 15) << 10;
  uint32_t mant = absu & 0x7fffff;
  uint32_t half = exp | (mant >> 13);
  uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1)))
    ++half; // may carry into the exponent, which is the right answer
  return static_cast<uint16_t>(sign | half);
}

float halfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  float magnitude;
  if (exp == 0)
    magnitude = std::ldexp(static_cast<float>(mant), -24);
  else if (exp == 31)
    magnitude = mant ? NAN : INFINITY;
  else
    magnitude = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  uint32_t u;
  std::memcpy(&u, &magnitude, 4);
  u |= sign;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

int64_t dtypeBytes(DType t) { return t == DType::F32 ? 4 : 2; }

void roundTo(DType t, std::vector<double> &values, std::string &bytes) {
  bytes.resize(values.size() * dtypeBytes(t));
  char *out = bytes.data();
  for (size_t i = 0; i < values.size(); ++i) {
    float f = static_cast<float>(values[i]);
    if (t == DType::F32) {
      std::memcpy(out + 4 * i, &f, 4);
      values[i] = f;
    } else if (t == DType::BF16) {
      uint16_t h = floatToBf16(f);
      std::memcpy(out + 2 * i, &h, 2);
      values[i] = bf16ToFloat(h);
    } else {
      uint16_t h = floatToHalf(f);
      std::memcpy(out + 2 * i, &h, 2);
      values[i] = halfToFloat(h);
    }
  }
}

} // namespace muse::check
