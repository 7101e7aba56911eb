#include "runtime/pq_lut_kernels.h"

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

}  // namespace qnoise::kernels
