#pragma once
// A quantization plan: ordered stages, each a set of layer-name patterns quantized together with one
// scheme (PQ with one block size and K, or per-channel int8 / int4), each followed by finetuning of
// the centroids and of everything still float (with Quant-Noise on the layers not yet quantized)
// when the caller gives a finetuning callback (module_compression.h). A plan of PQ stages is iPQ;
// stages of different schemes make a mixed plan. Read from JSON or built per model family by the
// task (TrainingTask::default_ipq_plan).
//
//   {"stages": [{"name": "ffn", "layers": ["*.fc1", "*.fc2"], "block_size": 8, "n_centroids": 256,
//                "centroid_bits": 16},
//               {"name": "attention", "layers": ["*.attn.*"], "scheme": "int8"}],
//    "finetune_steps": 300, "lr": 1e-4, "noise_rate": 0.05, "kmeans_iterations": 15,
//    "blocks_per_centroid": 4, "rest": "float16"}
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace qnoise {

// How a stage stores its layers' weights.
enum class StageScheme { Pq, Int8, Int4 };
std::string to_string(StageScheme scheme);  // "pq", "int8", "int4"

struct PqStage {
  std::string name;
  std::vector<std::string> layers;  // globs over module names; a layer goes to the first stage matching it
  StageScheme scheme = StageScheme::Pq;  // int8 / int4: the PQ fields below unused
  // int8 / int4: one min-max range per output channel, or one for the whole tensor ("ranges":
  // "tensor", as the paper's scalar quantization).
  bool per_tensor = false;
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
// stage without layers, an unknown scheme, block size or K below 1, K above 65536).
QuantizationPlan parse_quantization_plan(const nlohmann::json& json);
nlohmann::json to_json(const QuantizationPlan& plan);
// Reads a plan from a JSON file; errors name the file.
QuantizationPlan read_quantization_plan(const std::string& path);

}  // namespace qnoise
