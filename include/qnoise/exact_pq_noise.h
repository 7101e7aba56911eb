#pragma once
// Exact PQ noise for training (the paper's "exact" iPQ noise, and iPQ QAT at rate 1): the chosen
// blocks are replaced by their nearest centroid of a codebook learned by k-means on the layer's
// current weight, instead of being zeroed as the cheaper proxy does. The codebooks follow the
// weights: the trainer relearns them every few hundred updates.
#include <torch/nn/module.h>

#include <cstdint>
#include <vector>

#include "qnoise/noisy_layers.h"

namespace qnoise {

// One target per layer the proxy targets select, with the same rate and block size and a pq-exact
// function whose codebook has min(max_centroids, n_blocks / blocks_per_centroid) centroids (at
// least 1; the defaults are the built-in iPQ plans' K, and a plan's n_centroids and
// blocks_per_centroid train for that plan), learned from the layer's weight (10 EM iterations,
// seeded by `seed`).
std::vector<NoiseTarget> exact_pq_targets(torch::nn::Module& model, const std::vector<NoiseTarget>& proxy_targets,
                                          uint64_t seed, int64_t max_centroids = 256,
                                          int64_t blocks_per_centroid = 4);

}  // namespace qnoise
