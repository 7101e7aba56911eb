#include "qnoise/exact_pq_noise.h"

#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>

#include "qnoise/error.h"
#include "qnoise/product_quantizer.h"

namespace qnoise {

std::vector<NoiseTarget> exact_pq_targets(torch::nn::Module& model, const std::vector<NoiseTarget>& proxy_targets,
                                          uint64_t seed, int64_t max_centroids, int64_t blocks_per_centroid) {
  QNOISE_CHECK(max_centroids >= 1 && blocks_per_centroid >= 1, "exact PQ noise needs at least 1 centroid and 1 block "
               "per centroid, got ", max_centroids, " and ", blocks_per_centroid);
  torch::NoGradGuard no_grad;
  const NoisyLayers chosen(model, proxy_targets);  // which layers, and their block layouts
  std::vector<NoiseTarget> exact;
  for (const auto& layer : chosen.layers()) {
    const NoiseTarget& proxy = chosen.targets()[layer.target];
    const at::Tensor blocks = layer.layout.to_blocks(layer.weight_slot->detach()).to(at::kFloat);
    const int64_t k = std::clamp<int64_t>(layer.layout.n_blocks() / blocks_per_centroid, 1, max_centroids);
    ProductQuantizer quantizer(layer.layout.block_size(),
                               ProductQuantizerOptions().set_n_centroids(k).set_n_iterations(10).set_seed(seed));
    quantizer.train(blocks.cpu());
    // A layer's own name is a glob matching only itself (names hold no '*' or '?').
    exact.push_back({layer.name, proxy.rate, proxy.block_size,
                     NoiseFunction::pq_exact(quantizer.codebook().to(layer.weight_slot->device()))});
  }
  return exact;
}

}  // namespace qnoise
