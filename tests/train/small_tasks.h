#pragma once
// Tasks and iPQ settings small enough for tests: a small CNN on 512 Fashion-MNIST images.
#include <torch/torch.h>

#include "qnoise/ipq.h"
#include "qnoise/trainer.h"

namespace qnoise::testing {

inline std::unique_ptr<TrainingTask> small_cnn_task() {
  torch::manual_seed(1);
  return make_training_task({{"task", "image"}, {"train_limit", 512}, {"batch_size", 64}, {"valid_size", 500},
                             {"model", {{"arch", "small-cnn"}, {"channels", 8}}}});
}

// Both layers of the small CNN's pointwise stage, then its 3x3 kernels; K at most 16.
inline QuantizationPlan small_cnn_plan(int64_t finetune_steps) {
  return parse_quantization_plan(
      {{"stages",
        {{{"name", "pointwise"}, {"layers", {"conv3", "classifier"}}, {"block_size", 4}, {"n_centroids", 16}},
         {{"name", "kernels"}, {"layers", {"conv*"}}, {"block_size", 9}, {"n_centroids", 16}}}},
       {"finetune_steps", finetune_steps},
       {"lr", 1e-3},
       {"noise_rate", 0.1}});
}

inline IpqOptions quiet_ipq(const QuantizationPlan& plan, const std::string& checkpoint = "") {
  IpqOptions options;
  options.plan = plan;
  options.optimizer = default_trainer_options("image").optimizer;
  options.checkpoint_path = checkpoint;
  options.progress.mode = ProgressOptions::Mode::Off;
  return options;
}

}  // namespace qnoise::testing
