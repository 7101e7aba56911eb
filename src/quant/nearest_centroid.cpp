#include "quant/nearest_centroid.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "quant/cpu_features.h"

// libtorch's OpenMP backend implements at::parallel_for inline in its header: without -fopenmp
// the loop silently runs on one thread here (and in every other file that uses it).
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#warning "at::parallel_for runs serially: compile qnoise with OpenMP (-fopenmp, OpenMP::OpenMP_CXX)"
#endif

namespace qnoise::kernels {

namespace {

// fma chain from 0 in j order: the AVX2 kernel computes ||x||^2 the same way.
float squared_norm(const float* v, int64_t dim) {
  float sum = 0.0f;
  for (int64_t j = 0; j < dim; ++j) sum = std::fma(v[j], v[j], sum);
  return sum;
}

// Negative values come from cancellation in the expanded formula; NaN stays NaN.
float finish_distance(float best_score, float x_norm) {
  const float distance = best_score + x_norm;
  return distance < 0.0f ? 0.0f : distance;
}

}  // namespace

CentroidPanelStorage::CentroidPanelStorage(const float* codebook, int64_t n_centroids, int64_t dim)
    : n_centroids_(n_centroids),
      dim_(dim),
      padded_centroids_((n_centroids + kCentroidTile - 1) / kCentroidTile * kCentroidTile),
      minus_two_ct_(static_cast<size_t>(dim * padded_centroids_), 0.0f),
      centroid_norms_(static_cast<size_t>(padded_centroids_),
                      std::numeric_limits<float>::infinity()) {
  for (int64_t k = 0; k < n_centroids; ++k) {
    const float* centroid = codebook + k * dim;
    centroid_norms_[k] = squared_norm(centroid, dim);
    for (int64_t j = 0; j < dim; ++j)
      minus_two_ct_[j * padded_centroids_ + k] = -2.0f * centroid[j];
  }
}

CentroidPanel CentroidPanelStorage::panel() const {
  CentroidPanel panel;
  panel.n_centroids = n_centroids_;
  panel.dim = dim_;
  panel.padded_centroids = padded_centroids_;
  panel.minus_two_ct = minus_two_ct_.data();
  panel.centroid_norms = centroid_norms_.data();
  return panel;
}

void nearest_centroid_reference(const float* x, int64_t n, const CentroidPanel& panel,
                                int32_t* index, float* distance) {
  const int64_t dim = panel.dim;
  const int64_t stride = panel.padded_centroids;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = x + i * dim;
    float best_score = std::numeric_limits<float>::infinity();
    int32_t best_index = 0;
    for (int64_t k = 0; k < panel.n_centroids; ++k) {
      float score = panel.centroid_norms[k];
      for (int64_t j = 0; j < dim; ++j)
        score = std::fma(panel.minus_two_ct[j * stride + k], row[j], score);
      if (score < best_score) {
        best_score = score;
        best_index = static_cast<int32_t>(k);
      }
    }
    index[i] = best_index;
    distance[i] = finish_distance(best_score, squared_norm(row, dim));
  }
}

void nearest_centroid(const float* x, int64_t n, const CentroidPanel& panel, int32_t* index,
                      float* distance) {
  static const bool use_avx2 = cpu_has_avx2_fma();
  const auto kernel = use_avx2 ? nearest_centroid_avx2 : nearest_centroid_reference;
  // Rows are handed out in pieces of about 2^18 multiply-adds from a shared counter rather than
  // split evenly up front: on a shared machine one busy core would otherwise hold up the whole
  // call. Every row is computed the same way wherever it runs, so results do not change.
  const int64_t work_per_row = std::max<int64_t>(1, panel.padded_centroids * panel.dim);
  const int64_t piece_rows = std::max<int64_t>(16, (int64_t{1} << 18) / work_per_row);
  const int64_t n_pieces = (n + piece_rows - 1) / piece_rows;
  const int64_t dim = panel.dim;
  std::atomic<int64_t> next_piece{0};
  // Each task drains the counter, so any number of tasks (one per thread, or one inline when
  // nested in another parallel region) covers every piece exactly once.
  at::parallel_for(0, n_pieces, 2, [&](int64_t, int64_t) {
    for (int64_t piece = next_piece++; piece < n_pieces; piece = next_piece++) {
      const int64_t begin = piece * piece_rows;
      const int64_t count = std::min(piece_rows, n - begin);
      kernel(x + begin * dim, count, panel, index + begin, distance + begin);
    }
  });
}

}  // namespace qnoise::kernels
