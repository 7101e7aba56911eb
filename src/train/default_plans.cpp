#include "train/default_plans.h"

#include <string>
#include <vector>

#include "qnoise/noisy_layers.h"

namespace qnoise::detail {

namespace {

nlohmann::json plan(nlohmann::json stages, double lr, int64_t finetune_steps, int64_t blocks_per_centroid) {
  return {{"stages", std::move(stages)},
          {"finetune_steps", finetune_steps},
          {"lr", lr},
          {"noise_rate", 0.05},
          {"blocks_per_centroid", blocks_per_centroid}};
}

}  // namespace

nlohmann::json transformer_ipq_plan(const torch::nn::Module& model, double lr, int64_t finetune_steps) {
  std::vector<std::string> others;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    const std::string& name = item.key();
    const WeightSlot slot = find_weight_slot(*item.value());
    if (slot.weight == nullptr || glob_match("*.fc1", name) || glob_match("*.fc2", name) ||
        glob_match("*.attn.*", name))
      continue;
    others.push_back(name);
  }
  nlohmann::json stages = {{{"name", "ffn"}, {"layers", {"*.fc1", "*.fc2"}}, {"block_size", 8}}};
  // Blocks of 4 for the embeddings: they are also the (tied) output layer, and with blocks of 8
  // the KJV LM lost 20.9% test perplexity against 6.8% with 4 (docs/compression.md).
  if (!others.empty()) stages.push_back({{"name", "embeddings"}, {"layers", others}, {"block_size", 4}});
  stages.push_back({{"name", "attention"}, {"layers", {"*.attn.*"}}, {"block_size", 4}});
  return plan(stages, lr, finetune_steps, 4);
}

nlohmann::json image_ipq_plan(bool efficientnet, double lr, int64_t finetune_steps) {
  if (!efficientnet)
    return plan({{{"name", "pointwise"}, {"layers", {"conv3", "classifier"}}, {"block_size", 4}},
                 {{"name", "kernels"}, {"layers", {"conv1", "conv2"}}, {"block_size", 9}}},
                lr, finetune_steps, 4);
  // Centroids in 4 bits: this model's layers are small (at most 3,200 blocks), so float16
  // codebooks weighed 2.6 times their codes and held the file to 5.8x (docs/compression.md).
  return plan({{{"name", "pointwise"}, {"layers", {"*.expand", "*.project", "*.reduce", "head.conv"}}, {"block_size", 8},
                {"centroid_bits", 4}},
               {{"name", "depthwise"}, {"layers", {"*.depthwise"}}, {"block_size", 9}, {"centroid_bits", 4}},
               {{"name", "classifier"}, {"layers", {"classifier"}}, {"block_size", 8}, {"centroid_bits", 4}}},
              lr, finetune_steps, 4);
}

}  // namespace qnoise::detail
