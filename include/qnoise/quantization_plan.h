#pragma once
// An iPQ quantization plan: ordered stages, each a set of layer-name patterns quantized together
// with one block size and K, followed by finetuning of the centroids and of everything still float
// (with Quant-Noise on the layers not yet quantized). Read from JSON or built per model family by
// the task (TrainingTask::default_ipq_plan).
//
//   {"stages": [{"name": "ffn", "layers": ["*.fc1", "*.fc2"], "block_size": 8, "n_centroids": 256,
//                "centroid_bits": 16},
//               {"name": "attention", "layers": ["*.attn.*"], "block_size": 4}],
//    "finetune_steps": 300, "lr": 1e-4, "noise_rate": 0.05, "kmeans_iterations": 15,
//    "blocks_per_centroid": 4, "rest": "float16"}
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace qnoise {

struct PqStage {
  std::string name;
  std::vector<std::string> layers;  // globs over module names; a layer goes to the first stage matching it
  int64_t block_size = 8;
  int64_t n_centroids = 256;  // K (at most; see blocks_per_centroid)
  // How the file stores the centroids: 16 (float16), 8 or 4 bits (affine per codebook). Fewer bits
  // suit small layers, whose codebooks otherwise weigh more than their codes.
  int centroid_bits = 16;
};

struct QuantizationPlan {
  std::vector<PqStage> stages;
  int64_t finetune_steps = 0;       // updates after each stage (0: none)
  double lr = 1e-4;                 // constant during finetuning
  double noise_rate = 0.05;         // PQ Quant-Noise on the layers not yet quantized (0: none)
  int kmeans_iterations = 15;
  // A layer of n blocks gets K = min(n_centroids, n / blocks_per_centroid) centroids (at least 2),
  // so a small layer's codebook does not outweigh its codes.
  int64_t blocks_per_centroid = 4;
  std::string rest = "float16";     // tensors outside the plan (biases, norms): float16 or float32
  uint64_t seed = 1;

  int64_t centroids_for(const PqStage& stage, int64_t n_blocks) const;
};

// Throws qnoise::Error naming the key on unknown keys, wrong types or bad values (no stages, a
// stage without layers, block size or K below 1, K above 65536).
QuantizationPlan parse_quantization_plan(const nlohmann::json& json);
nlohmann::json to_json(const QuantizationPlan& plan);
// Reads a plan from a JSON file; errors name the file.
QuantizationPlan read_quantization_plan(const std::string& path);

}  // namespace qnoise
