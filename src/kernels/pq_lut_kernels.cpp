#include "kernels/pq_lut_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

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
        for (int64_t i = 0; i < d; ++i) sum += w.centroids_t[i * w.k_padded + k] * xj[i * lanes + b];
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
                                 const float* x, uint8_t* scratch, float* y) {
  const int64_t d = w.block_size, j0 = w.group_first_block(group), s = w.group_size(group);
  const PqInt8Scratch parts = pq_int8_scratch(w, scratch);
  int32_t* products = parts.products;
  uint8_t* tables = parts.tables;
  int exponents[kPqInt8MaxGroupBlocks];
  int32_t lows[kPqInt8MaxGroupBlocks];
  PqInt8GroupScale scale;
  std::vector<int> xq(static_cast<size_t>(d));
  for (int64_t jj = 0; jj < s; ++jj) {
    const float* xj = x + (j0 + jj) * d;
    float largest = 0.0f;
    bool block_finite = true;
    for (int64_t i = 0; i < d; ++i) {
      block_finite = block_finite && std::isfinite(xj[i]);
      largest = std::max(largest, std::abs(xj[i]));
    }
    const bool zero = !(largest >= kPqSmallestBlock) || !block_finite;
    const int e = zero ? 0 : pq_block_exponent(largest);
    for (int64_t i = 0; i < d; ++i)
      xq[i] = zero ? 0 : static_cast<int>(std::nearbyint(xj[i] * pq_power_of_two(-e)));
    int32_t low = 0, high = 0;
    for (int64_t k = 0; k < w.n_centroids; ++k) {
      int32_t dot = 0;
      for (int64_t i = 0; i < d; ++i) dot += w.centroid_level(k, i) * xq[i];
      products[jj * kPqInt8TableBytes + k] = dot;
      low = k == 0 ? dot : std::min(low, dot);
      high = k == 0 ? dot : std::max(high, dot);
    }
    exponents[jj] = e;
    lows[jj] = low;
    scale.add_block(e, low, high, block_finite, w.centroid_scale);
  }
  const float step = scale.step(w.centroid_scale), offset_sum = scale.offset_sum;
  for (int64_t jj = 0; jj < s; ++jj)
    for (int64_t k = 0; k < kPqInt8TableBytes; ++k)
      tables[jj * kPqInt8TableBytes + k] =
          k < w.n_centroids ? static_cast<uint8_t>(pq_table_level(
                                  static_cast<uint32_t>(products[jj * kPqInt8TableBytes + k] - lows[jj]),
                                  scale.right_shift(exponents[jj])))
                            : 0;
  for (int64_t o = row_begin; o < row_end; ++o) {
    uint32_t sum = 0;
    for (int64_t jj = 0; jj < s; ++jj) sum += tables[jj * kPqInt8TableBytes + w.codes[w.code_index(o, j0 + jj)]];
    y[o] += std::fma(step, static_cast<float>(sum), offset_sum);
  }
}

}  // namespace qnoise::kernels
