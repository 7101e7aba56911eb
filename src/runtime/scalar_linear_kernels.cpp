#include "runtime/scalar_linear_kernels.h"

namespace qnoise::kernels {

void scalar_matvec_reference(const ScalarLinearWeight& w, const float* x, float x_sum, int64_t row_begin,
                             int64_t row_end, float* y) {
  for (int64_t o = row_begin; o < row_end; ++o) {
    float sum = 0.0f;
    for (int64_t i = 0; i < w.in; ++i) sum += static_cast<float>(w.code(o, i)) * x[i];
    y[o] = w.scale[o] * (sum - w.zero_point[o] * x_sum);
  }
}

void scalar_decode_rows_reference(const ScalarLinearWeight& w, int64_t row_begin, int64_t row_end, float* out) {
  for (int64_t o = row_begin; o < row_end; ++o) {
    float* row = out + (o - row_begin) * w.in;
    for (int64_t i = 0; i < w.in; ++i) row[i] = (static_cast<float>(w.code(o, i)) - w.zero_point[o]) * w.scale[o];
  }
}

}  // namespace qnoise::kernels
