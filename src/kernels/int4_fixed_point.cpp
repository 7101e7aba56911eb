#include "kernels/int4_fixed_point.h"

#include <algorithm>
#include <cmath>

namespace qnoise::kernels {

bool fixed_point_activations(const float* x, int64_t n, int32_t* levels, float* step, int64_t* level_sum) {
  float largest = 0.0f;
  if (!largest_magnitude_reference(x, n, &largest)) return false;
  *step = largest / kFixedLevels;
  const float inverse = largest > 0.0f ? kFixedLevels / largest : 0.0f;
  const float top = static_cast<float>(kFixedLevels);
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    // x * inverse may round one past the top level at the largest |x|.
    levels[i] = static_cast<int32_t>(std::clamp(std::nearbyint(x[i] * inverse), -top, top));
    sum += levels[i];
  }
  *level_sum = sum;
  return true;
}

void int4_fixed_point_matvec_reference(const ScalarLinearWeight& w, const int32_t* levels, int64_t level_sum,
                                       float step, int64_t row_begin, int64_t row_end, float* y) {
  for (int64_t o = row_begin; o < row_end; ++o) {
    int64_t dot = 0;
    for (int64_t i = 0; i < w.in; ++i) dot += static_cast<int64_t>(w.code(o, i)) * levels[i];
    y[o] = fixed_point_output(w, o, dot, level_sum, step);
  }
}

}  // namespace qnoise::kernels
