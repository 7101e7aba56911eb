#include <gtest/gtest.h>
#include <torch/torch.h>

#include "train/small_qnz_models.h"
#include "qnoise/error.h"
#include "qnoise/layer_pruning.h"
#include "qnoise/transformer.h"
#include "qnoise/transformer_lm.h"

namespace {

using qnoise::testing::write_tiny_wikitext;

std::unique_ptr<qnoise::TrainingTask> four_layer_lm(const std::string& data, int64_t share_every, bool cycle = false) {
  nlohmann::json config = qnoise::testing::tiny_lm_config(data);
  config["model"]["layers"] = 4;
  config["model"]["share_every"] = share_every;
  config["model"]["share_cycle"] = cycle;
  torch::manual_seed(3);
  auto task = qnoise::make_training_task(config);
  qnoise::testing::train_a_few_steps(*task, 10, 1e-2);
  return task;
}

qnoise::TransformerStackImpl& stack_of(qnoise::TrainingTask& task) {
  return *dynamic_cast<qnoise::TransformerLmImpl&>(task.model()).decoder;
}

TEST(LayerPruning, PrunedModelComputesWhatTheFullModelComputesOnTheKeptDepths) {
  const auto data = write_tiny_wikitext("prune_lm");
  auto trained = four_layer_lm(data, 1);
  auto pruned = qnoise::prune_layers(*trained, 2);
  EXPECT_EQ(pruned->config()["model"]["layers"], 2);
  // Two of four layers' weights are gone; everything outside the stack stays.
  const int64_t per_layer = qnoise::count_parameters(*stack_of(*trained).layers[0]);
  EXPECT_EQ(qnoise::count_parameters(pruned->model()), qnoise::count_parameters(trained->model()) - 2 * per_layer);

  stack_of(*trained).set_kept_layers({0, 2});
  const double full_loss = trained->evaluate("valid").at("loss");
  EXPECT_NEAR(pruned->evaluate("valid").at("loss"), full_loss, 1e-6 * full_loss);
  stack_of(*trained).set_kept_layers({});
  EXPECT_GT(std::abs(trained->evaluate("valid").at("loss") - full_loss), 1e-4);  // the pruned layers mattered
}

TEST(LayerPruning, SharedGroupsShrinkWithTheKeptDepths) {
  const auto data = write_tiny_wikitext("prune_shared_lm");
  auto trained = four_layer_lm(data, 2);  // depths 0,1 share layer 0; depths 2,3 share layer 1
  auto pruned = qnoise::prune_layers(*trained, 2);
  EXPECT_EQ(pruned->config()["model"]["layers"], 2);
  EXPECT_EQ(pruned->config()["model"]["share_every"], 1);
  EXPECT_EQ(qnoise::count_parameters(pruned->model()), qnoise::count_parameters(trained->model()));
  stack_of(*trained).set_kept_layers({0, 2});
  const double full_loss = trained->evaluate("valid").at("loss");
  EXPECT_NEAR(pruned->evaluate("valid").at("loss"), full_loss, 1e-6 * full_loss);
}

// Sharing in a cycle (layers 0 1 0 1), pruning every other depth keeps one layer: half the bytes.
TEST(LayerPruning, CyclicSharingLosesWholeLayersToPruning) {
  EXPECT_EQ(qnoise::sharing_schedule(4, 2, /*share_cycle=*/true), (std::vector<int64_t>{0, 1, 0, 1}));
  EXPECT_EQ(qnoise::sharing_schedule(4, 2, /*share_cycle=*/false), (std::vector<int64_t>{0, 0, 1, 1}));
  const auto data = write_tiny_wikitext("prune_cycle_lm");
  auto trained = four_layer_lm(data, 2, /*cycle=*/true);
  EXPECT_EQ(stack_of(*trained).schedule(), (std::vector<int64_t>{0, 1, 0, 1}));
  auto pruned = qnoise::prune_layers(*trained, 2);
  EXPECT_EQ(pruned->config()["model"]["layers"], 2);
  EXPECT_EQ(stack_of(*pruned).layers->size(), 1u);
  const int64_t per_layer = qnoise::count_parameters(*stack_of(*trained).layers[0]);
  EXPECT_EQ(qnoise::count_parameters(pruned->model()), qnoise::count_parameters(trained->model()) - per_layer);
  stack_of(*trained).set_kept_layers({0, 2});
  const double full_loss = trained->evaluate("valid").at("loss");
  EXPECT_NEAR(pruned->evaluate("valid").at("loss"), full_loss, 1e-6 * full_loss);
}

TEST(LayerPruning, KeptDepthsGetTheSmallestSharingThatDescribesThem) {
  const auto lm = [](int64_t layers, int64_t share_every, bool cycle = false) {
    return nlohmann::json{{"task", "lm"}, {"data", "unused"},
                          {"model", {{"layers", layers}, {"share_every", share_every}, {"share_cycle", cycle}}}};
  };
  const auto model = [&](const nlohmann::json& config, int64_t keep) {
    const auto m = qnoise::pruned_task_config(config, keep)["model"];
    return std::make_tuple(m["layers"].get<int64_t>(), m["share_every"].get<int64_t>(), m["share_cycle"].get<bool>());
  };
  EXPECT_EQ(model(lm(4, 2), 3), std::make_tuple(2, 1, false));   // depths 0, 3: one of each pair
  EXPECT_EQ(model(lm(6, 3), 2), std::make_tuple(3, 2, false));   // depths 0, 2, 4: layers 0 0 1
  EXPECT_EQ(model(lm(4, 2), 4), std::make_tuple(1, 1, false));   // depth 0: its pair's layer
  EXPECT_EQ(model(lm(8, 2, true), 2), std::make_tuple(4, 2, true));  // 0 1 2 3 0 1 2 3 -> 0 2 0 2
  EXPECT_EQ(std::get<0>(model({{"task", "lm"}, {"data", "unused"}, {"model", {{"layers", 5}}}}, 2)), 3);  // depths 0, 2, 4
  // Layers 0 0 0 1 1 1 2 2 2, depths 0, 2, 4, 6, 8: layers 0 0 1 2 2, which no grouping gives.
  EXPECT_THROW(qnoise::pruned_task_config(lm(9, 3), 2), qnoise::Error);
  EXPECT_THROW(qnoise::pruned_task_config(lm(4, 2), 0), qnoise::Error);
  EXPECT_THROW(qnoise::pruned_task_config({{"task", "image"}}, 2), qnoise::Error);
}

}  // namespace
