#pragma once
// The arithmetic that turns a clipping range into a scale and zero point, and rounds values to
// codes, in plain float32. ScalarQuantizer and the fused Quant-Noise kernels both use it, so a
// weight gets bit-identical codes on either path. No torch here.
#include <algorithm>
#include <cstdint>

// Always inlined: this header is also compiled into AVX2-only kernel files, and an out-of-line
// copy built there must never be picked by the linker for portable code.
#define QNOISE_ALWAYS_INLINE inline __attribute__((always_inline))

namespace qnoise {

struct AffineQParams {
  float scale;
  int32_t zero_point;
};

// Round to nearest, ties to even (as torch.round and _mm256_round_ps), without a libm call:
// adding and subtracting 1.5 * 2^23 leaves the rounded value for |x| < 2^22. Larger |x| lie far
// outside any code range, so the clamp that follows gives the right code all the same.
// (Compilers may not fold this without -ffast-math, which this project never uses.)
QNOISE_ALWAYS_INLINE float round_half_even(float x) {
  constexpr float kMagic = 12582912.0f;
  return (x + kMagic) - kMagic;
}

// Codes are unsigned in [0, 2^bits - 1]. Symmetric: zero point 2^(bits-1), +-max(|lower|, upper)
// maps to +-(2^(bits-1) - 1). Affine: [lower, upper] spans the codes (lower <= 0 <= upper).
// An empty range gets scale 1, so all-zero channels stay exact.
QNOISE_ALWAYS_INLINE AffineQParams qparams_for_range(float lower, float upper, int bits, bool symmetric) {
  if (symmetric) {
    const auto half_levels = static_cast<float>((1 << (bits - 1)) - 1);
    const float amax = std::max(upper, -lower);
    return {amax > 0 ? amax / half_levels : 1.0f, 1 << (bits - 1)};
  }
  const auto quant_max = static_cast<float>((1 << bits) - 1);
  const float width = upper - lower;
  const float scale = width > 0 ? width / quant_max : 1.0f;
  const float zero_point = std::min(std::max(round_half_even(-lower / scale), 0.0f), quant_max);
  return {scale, static_cast<int32_t>(zero_point)};
}

}  // namespace qnoise
