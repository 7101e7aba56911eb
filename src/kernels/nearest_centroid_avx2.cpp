// AVX2+FMA nearest-centroid kernel. Compiled with -mavx2 -mfma and called only after
// cpu_has_avx2_fma(), so everything here has internal linkage and no standard-library templates
// are instantiated: a weak symbol compiled with AVX2 could otherwise replace the portable copy.
//
// Tile: kRows input vectors x 16 centroids (two ymm accumulators per row). For each j the 16
// values -2 c_k[j] are loaded once and multiplied by the broadcast x_r[j] of every row, with the
// same fma order as the reference, so scores are bit-identical. Each row keeps a running minimum
// and its index per lane (lane l sees centroids l, l+8, l+16, ... in increasing order); the lanes
// are reduced at the end, picking the lowest index among equal minima like the reference.
#include <immintrin.h>

#include <cstdint>

#include "kernels/nearest_centroid_kernels.h"

namespace qnoise::kernels {

namespace {

// The row and j loops must be unrolled so the accumulator arrays live in registers; GCC -O2
// keeps them on the stack otherwise.
#define QNOISE_UNROLL _Pragma("GCC unroll 16")

constexpr int kLanes = 8;
// 4 rows x 16 centroids = 8 accumulators; more rows were no faster (docs/kernels.md, "k-means:
// the nearest-centroid kernel").
constexpr int kMaxRowsPerTile = 4;

float squared_norm(const float* v, int64_t dim) {
  float sum = 0.0f;
  for (int64_t j = 0; j < dim; ++j) sum = __builtin_fmaf(v[j], v[j], sum);
  return sum;
}

// Keeps the first strict minimum: NaN compares false and never replaces the running value
// (vminps returns its second operand unless the first is strictly smaller).
inline void keep_smaller(__m256 score, __m256i candidate, __m256& best, __m256i& best_index) {
  const __m256 smaller = _mm256_cmp_ps(score, best, _CMP_LT_OQ);
  best = _mm256_min_ps(score, best);
  best_index = _mm256_castps_si256(
      _mm256_blendv_ps(_mm256_castsi256_ps(best_index), _mm256_castsi256_ps(candidate), smaller));
}

// Lowest index among the lanes holding the smallest value (lanes hold no NaN).
inline void reduce_lanes(__m256 best, __m256i best_index, float& score, int32_t& index) {
  alignas(32) float values[kLanes];
  alignas(32) int32_t indices[kLanes];
  _mm256_store_ps(values, best);
  _mm256_store_si256(reinterpret_cast<__m256i*>(indices), best_index);
  score = values[0];
  index = indices[0];
  for (int lane = 1; lane < kLanes; ++lane) {
    if (values[lane] < score || (values[lane] == score && indices[lane] < index)) {
      score = values[lane];
      index = indices[lane];
    }
  }
}

// kDim > 0 fixes the dimension at compile time (fully unrolled j loop); 0 reads panel.dim.
template <int kRows, int kDim>
void nearest_rows(const float* x, const CentroidPanel& panel, int32_t* index, float* distance) {
  const int64_t dim = kDim > 0 ? kDim : panel.dim;
  const int64_t stride = panel.padded_centroids;
  __m256 best[kRows];
  __m256i best_index[kRows];
  __m256i lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    best[r] = _mm256_set1_ps(__builtin_inff());
    best_index[r] = lane_index;
  }
  const __m256i half_tile = _mm256_set1_epi32(kLanes);
  const __m256i whole_tile = _mm256_set1_epi32(2 * kLanes);
  for (int64_t k0 = 0; k0 < stride; k0 += 2 * kLanes) {
    // Hides x from loop-invariant motion: GCC would hoist all kRows*d broadcasts out of this
    // loop, spill them, and reload each twice, slower than broadcasting here (docs/kernels.md,
    // "k-means: the nearest-centroid kernel").
    asm("" : "+r"(x));
    __m256 low[kRows], high[kRows];
    const __m256 norm_low = _mm256_loadu_ps(panel.centroid_norms + k0);
    const __m256 norm_high = _mm256_loadu_ps(panel.centroid_norms + k0 + kLanes);
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      low[r] = norm_low;
      high[r] = norm_high;
    }
    const float* column = panel.minus_two_ct + k0;
    QNOISE_UNROLL
    for (int64_t j = 0; j < dim; ++j, column += stride) {
      const __m256 c_low = _mm256_loadu_ps(column);
      const __m256 c_high = _mm256_loadu_ps(column + kLanes);
      QNOISE_UNROLL
      for (int r = 0; r < kRows; ++r) {
        const __m256 xj = _mm256_broadcast_ss(x + r * dim + j);
        low[r] = _mm256_fmadd_ps(c_low, xj, low[r]);
        high[r] = _mm256_fmadd_ps(c_high, xj, high[r]);
      }
    }
    const __m256i high_index = _mm256_add_epi32(lane_index, half_tile);
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      keep_smaller(low[r], lane_index, best[r], best_index[r]);
      keep_smaller(high[r], high_index, best[r], best_index[r]);
    }
    lane_index = _mm256_add_epi32(lane_index, whole_tile);
  }
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    float score;
    reduce_lanes(best[r], best_index[r], score, index[r]);
    const float d = score + squared_norm(x + r * dim, dim);
    distance[r] = d < 0.0f ? 0.0f : d;
  }
}

template <int kDim>
void nearest_all_rows(const float* x, int64_t n, const CentroidPanel& panel, int32_t* index,
                      float* distance) {
  const int64_t dim = panel.dim;
  int64_t i = 0;
  for (; i + kMaxRowsPerTile <= n; i += kMaxRowsPerTile)
    nearest_rows<kMaxRowsPerTile, kDim>(x + i * dim, panel, index + i, distance + i);
  switch (n - i) {
    case 3: nearest_rows<3, kDim>(x + i * dim, panel, index + i, distance + i); break;
    case 2: nearest_rows<2, kDim>(x + i * dim, panel, index + i, distance + i); break;
    case 1: nearest_rows<1, kDim>(x + i * dim, panel, index + i, distance + i); break;
    default: break;
  }
}

}  // namespace

void nearest_centroid_avx2(const float* x, int64_t n, const CentroidPanel& panel, int32_t* index,
                           float* distance) {
  // The block sizes the design names (4, 8, 9 = 3x3 kernel, 16) get an unrolled j loop.
  switch (panel.dim) {
    case 4: nearest_all_rows<4>(x, n, panel, index, distance); break;
    case 8: nearest_all_rows<8>(x, n, panel, index, distance); break;
    case 9: nearest_all_rows<9>(x, n, panel, index, distance); break;
    case 16: nearest_all_rows<16>(x, n, panel, index, distance); break;
    default: nearest_all_rows<0>(x, n, panel, index, distance); break;
  }
}

}  // namespace qnoise::kernels
