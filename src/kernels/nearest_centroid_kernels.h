#pragma once
// The inner kernel of k-means and PQ encoding: for each of n vectors of dimension d, the index of
// the nearest of K centroids and its squared distance, with distances computed as
// ||x||^2 - 2 x.c + ||c||^2. No torch here: the AVX2 version is compiled with its own flags.
#include <cstdint>
#include <vector>

namespace qnoise::kernels {

// SIMD tile width in centroids: panels are padded to a multiple of it.
constexpr int64_t kCentroidTile = 16;

// Centroids prepared once per codebook: transposed and pre-scaled so the kernel streams them.
struct CentroidPanel {
  int64_t n_centroids = 0;       // K
  int64_t dim = 0;               // d
  int64_t padded_centroids = 0;  // K rounded up to the SIMD tile; padding never wins
  const float* minus_two_ct = nullptr;  // [d][padded_centroids]: -2 * c_k[j]
  const float* centroid_norms = nullptr;  // [padded_centroids]: ||c_k||^2, +inf in padding
};

// Owns the arrays a CentroidPanel points into; build one per codebook, then pass panel() to the
// kernels. Copies stay valid: panel() always points into this object's own storage.
class CentroidPanelStorage {
 public:
  // codebook: [n_centroids][dim] row-major floats.
  CentroidPanelStorage(const float* codebook, int64_t n_centroids, int64_t dim);
  CentroidPanel panel() const;

 private:
  int64_t n_centroids_;
  int64_t dim_;
  int64_t padded_centroids_;
  std::vector<float> minus_two_ct_;
  std::vector<float> centroid_norms_;
};

// Every kernel computes, for centroid k and vector x (each rounding step in this order):
//   score_k    = ||c_k||^2, then score_k = fma(-2 c_k[j], x[j], score_k) for j = 0..d-1
//   index      = the lowest k with the smallest score_k (NaN scores never win)
//   distance   = max(score_index + ||x||^2, 0), ||x||^2 = fma chain over j from 0.
// Taking the argmin before adding ||x||^2 keeps the finer ordering; it is still an argmin of the
// returned distance because rounding is monotonic.
// Reference: plain loops, std::fma in the same order as the SIMD kernels so results are equal.
void nearest_centroid_reference(const float* x, int64_t n, const CentroidPanel& panel,
                                int32_t* index, float* distance);
// AVX2+FMA version; only call when cpu_has_avx2_fma() (kernel_table.h).
void nearest_centroid_avx2(const float* x, int64_t n, const CentroidPanel& panel,
                           int32_t* index, float* distance);

}  // namespace qnoise::kernels
