#include "kernels/scalar_linear_kernels.h"

#include <algorithm>
#include <cmath>

namespace qnoise::kernels {

void scalar_matvec_reference(const ScalarLinearWeight& w, const float* x, float x_sum, int64_t row_begin,
                             int64_t row_end, float* y) {
  for (int64_t o = row_begin; o < row_end; ++o) {
    float sum = 0.0f;
    for (int64_t i = 0; i < w.in; ++i) sum += static_cast<float>(w.code(o, i)) * x[i];
    y[o] = w.scale[o] * (sum - w.zero_point[o] * x_sum);
  }
}

bool largest_magnitude_reference(const float* x, int64_t n, float* largest) {
  float result = 0.0f;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    result = std::max(result, std::abs(x[i]));
    finite = finite && std::isfinite(x[i]);
  }
  *largest = result;
  return finite;
}

int32_t quantize_activations(const float* x, int64_t n, int8_t* xq, float* x_scale) {
  float largest = 0.0f;
  const bool finite = largest_magnitude_reference(x, n, &largest);
  // A NaN or infinite activation makes the row's outputs NaN, as the float product would.
  *x_scale = finite ? largest / kActivationLevels : std::nanf("");
  const float inverse = finite && largest > 0.0f ? kActivationLevels / largest : 0.0f;
  int32_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float level = finite ? std::nearbyint(x[i] * inverse) : 0.0f;
    xq[i] = static_cast<int8_t>(std::clamp(level, -static_cast<float>(kActivationLevels), static_cast<float>(kActivationLevels)));
    sum += xq[i];
  }
  return sum;
}

void int8_activation_matvec_reference(const ScalarLinearWeight& w, const int8_t* xq, int32_t xq_sum, float x_scale,
                                      int64_t row_begin, int64_t row_end, float* y) {
  for (int64_t o = row_begin; o < row_end; ++o) {
    int32_t dot = 0;
    for (int64_t i = 0; i < w.in; ++i) dot += static_cast<int32_t>(w.code(o, i)) * xq[i];
    y[o] = int8_activation_output(w, o, dot, xq_sum, x_scale);
  }
}

void scalar_decode_rows_reference(const ScalarLinearWeight& w, int64_t row_begin, int64_t row_end, float* out) {
  for (int64_t o = row_begin; o < row_end; ++o) {
    float* row = out + (o - row_begin) * w.in;
    for (int64_t i = 0; i < w.in; ++i) row[i] = (static_cast<float>(w.code(o, i)) - w.zero_point[o]) * w.scale[o];
  }
}

}  // namespace qnoise::kernels
