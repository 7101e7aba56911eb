#pragma once
// Lloyd's k-means (EM) on [n, d] float32 rows: the learning half of product quantization.
// Callers validate their input (ProductQuantizer does); these functions only assert sizes.
//
// Results depend only on the data, the options and the initial codebook: not on the number of
// threads (every parallel loop writes per-row or per-cluster results, and sums run in index order).
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "qnoise/product_quantizer.h"

namespace qnoise {

struct KMeansResult {
  at::Tensor centroids;  // [K, d] float32
  KMeansStats stats;
};

// Runs options.n_iterations EM iterations on contiguous float32 [n, d] `data` (K <= n), starting
// from `initial_centroids` ([K, d] float32) when defined, otherwise from the seeded options.init.
// Each iteration: E-step (nearest centroid, objective recorded), repair of empty clusters by
// splitting the most populated one, M-step (cluster means).
KMeansResult kmeans(const at::Tensor& data, const ProductQuantizerOptions& options,
                    const at::Tensor& initial_centroids = {});

// The seeded initial codebooks, [K, d] float32.
// K distinct rows drawn uniformly.
at::Tensor kmeans_init_sampled(const at::Tensor& data, int64_t n_centroids, uint64_t seed);
// k-means++ (D^2 sampling); on large inputs it runs on a seeded subsample of
// max(40 K, 65536) rows to stay fast.
at::Tensor kmeans_init_plus_plus(const at::Tensor& data, int64_t n_centroids, uint64_t seed);

}  // namespace qnoise
