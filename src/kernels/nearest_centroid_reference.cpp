#include "kernels/nearest_centroid_kernels.h"


#include <algorithm>
#include <cmath>
#include <limits>


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

}  // namespace qnoise::kernels
