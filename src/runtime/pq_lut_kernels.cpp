#include "runtime/pq_lut_kernels.h"

#include <algorithm>
#include <cmath>

namespace qnoise::kernels {

// Plain loops: tables first, then every row's lookups in block order.
void pq_lut_group_reference(const PqLutWeight& w, int64_t group, int64_t row_begin, int64_t row_end,
                            const float* xt, int64_t lanes, float* tables, float* y) {
  const int64_t d = w.block_size, j0 = w.group_first_block(group), s = w.group_size(group);
  for (int64_t jj = 0; jj < s; ++jj) {
    const float* xj = xt + (j0 + jj) * d * lanes;
    for (int64_t k = 0; k < w.n_centroids; ++k) {
      float* entry = tables + (jj * w.k_padded + k) * lanes;
      for (int64_t b = 0; b < lanes; ++b) {
        float sum = 0.0f;
        for (int64_t i = 0; i < d; ++i) sum += w.centroids[k * d + i] * xj[i * lanes + b];
        entry[b] = sum;
      }
    }
  }
  for (int64_t o = row_begin; o < row_end; ++o) {
    float* yo = y + o * lanes;
    for (int64_t jj = 0; jj < s; ++jj) {
      const int64_t code = w.codes[w.code_index(o, j0 + jj)];
      const float* entry = tables + (jj * w.k_padded + code) * lanes;
      for (int64_t b = 0; b < lanes; ++b) yo[b] += entry[b];
    }
  }
}

void pq_int8_lut_group_reference(const PqLutWeight& w, int64_t group, int64_t row_begin, int64_t row_end,
                                 const float* x, float* float_tables, uint8_t* tables, float* y) {
  const int64_t d = w.block_size, kp = w.k_padded, j0 = w.group_first_block(group), s = w.group_size(group);
  for (int64_t jj = 0; jj < s; ++jj)
    for (int64_t k = 0; k < kp; ++k) {
      float t = 0.0f;
      for (int64_t i = 0; i < d; ++i) t = std::fma(w.centroids_t[i * kp + k], x[(j0 + jj) * d + i], t);
      float_tables[jj * kp + k] = t;
    }
  float offsets[kPqInt8MaxGroupBlocks];
  float range = 0.0f, offset_sum = 0.0f;
  bool finite = true;
  for (int64_t jj = 0; jj < s; ++jj) {
    const float* t = float_tables + jj * kp;
    float low = t[0], high = t[0];
    for (int64_t k = 0; k < w.n_centroids; ++k) {
      finite = finite && std::isfinite(t[k]);
      low = std::min(low, t[k]);
      high = std::max(high, t[k]);
    }
    offsets[jj] = low;
    range = std::max(range, high - low);
    offset_sum += low;
  }
  if (!finite) offset_sum = std::nanf("");
  const float step = range / 255.0f, inverse = finite && range > 0.0f ? 255.0f / range : 0.0f;
  for (int64_t jj = 0; jj < s; ++jj)
    for (int64_t k = 0; k < kPqInt8TableBytes; ++k)
      tables[jj * kPqInt8TableBytes + k] =
          k < w.n_centroids && finite
              ? static_cast<uint8_t>(std::min(std::nearbyint((float_tables[jj * kp + k] - offsets[jj]) * inverse), 255.0f))
              : 0;
  for (int64_t o = row_begin; o < row_end; ++o) {
    uint32_t sum = 0;
    for (int64_t jj = 0; jj < s; ++jj) sum += tables[jj * kPqInt8TableBytes + w.codes[w.code_index(o, j0 + jj)]];
    y[o] += std::fma(step, static_cast<float>(sum), offset_sum);
  }
}

}  // namespace qnoise::kernels
