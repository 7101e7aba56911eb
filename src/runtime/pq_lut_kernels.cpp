#include "runtime/pq_lut_kernels.h"

#include <algorithm>
#include <cmath>
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
                                 const float* x, uint8_t* scratch, float* y) {
  const int64_t d = w.block_size, j0 = w.group_first_block(group), s = w.group_size(group);
  auto* tables = scratch + 4 * kPqInt8TableBytes * w.group_blocks;
  float units[kPqInt8MaxGroupBlocks];
  int32_t lows[kPqInt8MaxGroupBlocks];
  float range = 0.0f, offset_sum = 0.0f;
  bool finite = true;
  std::vector<int32_t> products(static_cast<size_t>(w.n_centroids));
  std::vector<int> xq(static_cast<size_t>(d));
  for (int64_t jj = 0; jj < s; ++jj) {
    const float* xj = x + (j0 + jj) * d;
    float largest = 0.0f;
    for (int64_t i = 0; i < d; ++i) {
      finite = finite && std::isfinite(xj[i]);
      largest = std::max(largest, std::abs(xj[i]));
    }
    const float inverse_x = largest > 0.0f ? kPqCentroidLevels / largest : 0.0f;
    for (int64_t i = 0; i < d; ++i) xq[i] = std::isfinite(xj[i]) ? static_cast<int>(std::nearbyint(xj[i] * inverse_x)) : 0;
    int32_t low = 0, high = 0;
    for (int64_t k = 0; k < w.n_centroids; ++k) {
      int32_t dot = 0;
      for (int64_t i = 0; i < d; ++i) dot += w.centroid_level(k, i) * xq[i];
      products[k] = dot;
      low = k == 0 ? dot : std::min(low, dot);
      high = k == 0 ? dot : std::max(high, dot);
    }
    units[jj] = largest / kPqCentroidLevels * w.centroid_scale;
    lows[jj] = low;
    range = std::max(range, static_cast<float>(high - low) * units[jj]);
    offset_sum += static_cast<float>(low) * units[jj];
    auto* stored = reinterpret_cast<int32_t*>(scratch) + jj * kPqInt8TableBytes;
    std::copy(products.begin(), products.end(), stored);
  }
  if (!finite) offset_sum = std::nanf("");
  const float step = range / 255.0f, inverse = finite && range > 0.0f ? 255.0f / range : 0.0f;
  for (int64_t jj = 0; jj < s; ++jj) {
    const auto* products_j = reinterpret_cast<const int32_t*>(scratch) + jj * kPqInt8TableBytes;
    const float multiplier = units[jj] * inverse;
    for (int64_t k = 0; k < kPqInt8TableBytes; ++k)
      tables[jj * kPqInt8TableBytes + k] =
          k < w.n_centroids && finite ? static_cast<uint8_t>(std::min(
                                  std::nearbyint(static_cast<float>(products_j[k] - lows[jj]) * multiplier), 255.0f))
                            : 0;
  }
  for (int64_t o = row_begin; o < row_end; ++o) {
    uint32_t sum = 0;
    for (int64_t jj = 0; jj < s; ++jj) sum += tables[jj * kPqInt8TableBytes + w.codes[w.code_index(o, j0 + jj)]];
    y[o] += std::fma(step, static_cast<float>(sum), offset_sum);
  }
}

}  // namespace qnoise::kernels
