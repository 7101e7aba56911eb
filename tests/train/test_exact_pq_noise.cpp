#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "qnoise/checkpoint.h"
#include "qnoise/error.h"
#include "qnoise/exact_pq_noise.h"
#include "qnoise/trainer.h"
#include "train/small_tasks.h"

namespace {

struct TwoLayers : torch::nn::Module {
  TwoLayers() {
    fc1 = register_module("fc1", torch::nn::Linear(16, 64));  // 128 blocks of 8: K = 32
    fc2 = register_module("fc2", torch::nn::Linear(8, 4));    // 4 blocks of 8: K = 1
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};

TEST(ExactPqNoise, EveryNoisedBlockIsACentroidOfItsLayersCodebook) {
  torch::manual_seed(0);
  TwoLayers model;
  const auto targets = qnoise::exact_pq_targets(model, {{"*", 1.0, 8, qnoise::NoiseFunction::pq()}}, 7);
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0].pattern, "fc1");
  EXPECT_EQ(targets[0].function.codebook.sizes(), (std::vector<int64_t>{32, 8}));
  EXPECT_EQ(targets[1].function.codebook.sizes(), (std::vector<int64_t>{1, 8}));

  qnoise::NoisyLayers noisy(model, targets);
  at::Tensor noised;
  {
    auto scope = noisy.draw();
    noised = model.fc1->weight.detach().clone();
    const auto loss = model.fc1->forward(torch::ones({2, 16})).sum();
    loss.backward();
  }
  // Rate 1 (QAT): each block is exactly one of the 32 centroids, and it moved (k-means, K < blocks).
  const auto blocks = noised.reshape({-1, 8});
  const auto differences = (blocks.unsqueeze(1) - targets[0].function.codebook.unsqueeze(0)).abs().amax(-1);
  EXPECT_LT(std::get<0>(differences.min(1)).max().item<double>(), 1e-6);
  EXPECT_FALSE(torch::allclose(noised, model.fc1->weight));
  // Straight through: the parameter's gradient is the noisy weight's (d sum(W x)/dW = 1 x^T).
  EXPECT_TRUE(torch::allclose(model.fc1->weight.grad(), 2 * torch::ones({64, 16})));
}

TEST(ExactPqNoise, CodebookSizesFollowThePlansCentroidSettings) {
  torch::manual_seed(0);
  TwoLayers model;
  const std::vector<qnoise::NoiseTarget> proxy{{"*", 1.0, 8, qnoise::NoiseFunction::pq()}};
  // fc1's 128 blocks: one centroid per 32 blocks gives 4; at most 2 centroids gives 2.
  EXPECT_EQ(qnoise::exact_pq_targets(model, proxy, 7, 256, 32)[0].function.codebook.size(0), 4);
  EXPECT_EQ(qnoise::exact_pq_targets(model, proxy, 7, 2, 4)[0].function.codebook.size(0), 2);
  EXPECT_EQ(qnoise::exact_pq_targets(model, proxy, 7, 2, 4)[1].function.codebook.size(0), 1);  // 4 blocks / 4
  EXPECT_THROW(qnoise::exact_pq_targets(model, proxy, 7, 0, 4), qnoise::Error);
  EXPECT_THROW(qnoise::exact_pq_targets(model, proxy, 7, 256, 0), qnoise::Error);
}

TEST(ExactPqNoise, CentroidSettingsNeedExactNoiseAndValidValues) {
  auto task = qnoise::testing::small_cnn_task();
  qnoise::QuantNoiseOptions noise;
  noise.pq_rate = 0.5;
  noise.exact_centroids = 32;
  EXPECT_THROW(qnoise::quant_noise_targets(*task, noise), qnoise::Error);  // proxy noise has no codebooks
  noise.pq_exact = true;
  EXPECT_FALSE(qnoise::quant_noise_targets(*task, noise).empty());
  noise.exact_blocks_per_centroid = 0;
  EXPECT_THROW(qnoise::quant_noise_targets(*task, noise), qnoise::Error);
  // Checkpoints record them, so that a resumed run keeps its codebook sizes.
  const auto stored = qnoise::quant_noise_options_from_json(
      {{"pq_rate", 0.5}, {"pq_exact", true}, {"exact_centroids", 32}, {"exact_blocks_per_centroid", 32}});
  EXPECT_EQ(stored.exact_centroids, 32);
  EXPECT_EQ(stored.exact_blocks_per_centroid, 32);
  EXPECT_EQ(qnoise::quant_noise_options_from_json({{"pq_rate", 0.5}}).exact_centroids, 256);
}

TEST(ExactPqNoise, TrainsAtRateOneAndOnlyExactNoiseAllowsIt) {
  auto task = qnoise::testing::small_cnn_task();
  std::ostringstream log;
  auto options = qnoise::default_trainer_options("image");
  options.checkpoint_path = ::testing::TempDir() + "qnoise_exact_pq_" + std::to_string(getpid()) + ".pt";
  options.progress.mode = qnoise::ProgressOptions::Mode::Off;
  options.json_log = &log;
  options.max_steps = 3;
  options.noise.pq_rate = 1.0;
  EXPECT_THROW(qnoise::train(*task, options), qnoise::Error);  // the proxy would zero every block
  options.noise.pq_exact = true;
  options.noise.codebook_refresh = 2;
  options.noise.exact_centroids = 8;
  const auto result = qnoise::train(*task, options);
  EXPECT_EQ(result.steps, 3);
  EXPECT_NE(log.str().find("\"quant_noise\":\"pq-exact\""), std::string::npos);
  EXPECT_TRUE(std::isfinite(result.metrics.at("valid").at("loss")));
  const auto noise = qnoise::read_training_checkpoint_metadata(options.checkpoint_path).at("noise");
  EXPECT_EQ(noise.at("exact_centroids"), 8);
  EXPECT_FALSE(noise.contains("exact_blocks_per_centroid"));  // the default is left out
  // The codebooks the run trained with (kept for resuming) have at most 8 centroids, and a layer
  // with 32 blocks or more has exactly 8: the setting reached the noise.
  const auto state = qnoise::load_checkpoint(options.checkpoint_path, task->model(), nullptr);
  int64_t largest = 0;
  for (const auto& [name, tensor] : state.extras)
    if (name.rfind("noise_codebook.", 0) == 0) largest = std::max(largest, tensor.size(0));
  EXPECT_EQ(largest, 8);
}

}  // namespace
