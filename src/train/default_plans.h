#pragma once
// The built-in iPQ plans per model family (the paper's choices, adapted to this project's small
// models); TrainingTask::default_ipq_plan returns one of them.
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

namespace qnoise::detail {

// Transformers (LM and encoder): feed-forward layers first (block 8), then the embeddings, output
// and classifier layers (block 4), then attention projections (block 4), in the paper's order.
nlohmann::json transformer_ipq_plan(const torch::nn::Module& model, double lr, int64_t finetune_steps);

// EfficientNet: 1x1 convolutions (blocks of 8 input channels), then depthwise 3x3 kernels (whole
// kernels), then the classifier; the 144-weight stem stays float16. SmallCnn: 1x1 conv and
// classifier (4 input channels), then 3x3 convs (whole kernels).
nlohmann::json image_ipq_plan(bool efficientnet, double lr, int64_t finetune_steps);

}  // namespace qnoise::detail
