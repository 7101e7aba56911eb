#include <gtest/gtest.h>
#include <torch/torch.h>

#include "train/small_qnz_models.h"
#include "qnoise/error.h"
#include "qnoise/layer_pruning.h"
#include "qnoise/transformer_lm.h"

namespace {

using qnoise::testing::write_tiny_wikitext;

std::unique_ptr<qnoise::TrainingTask> four_layer_lm(const std::string& data, int64_t share_every) {
  nlohmann::json config = qnoise::testing::tiny_lm_config(data);
  config["model"]["layers"] = 4;
  config["model"]["share_every"] = share_every;
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

TEST(LayerPruning, RejectsWhatCannotBePruned) {
  const nlohmann::json lm = {{"task", "lm"}, {"data", "unused"}, {"model", {{"layers", 4}, {"share_every", 2}}}};
  EXPECT_THROW(qnoise::pruned_task_config(lm, 3), qnoise::Error);  // depths 0, 3: one of each pair
  EXPECT_THROW(qnoise::pruned_task_config({{"task", "lm"}, {"data", "unused"}, {"model", {{"layers", 6}, {"share_every", 3}}}}, 2),
               qnoise::Error);  // depths 0, 2, 4: two of the first triple, one of the second
  EXPECT_THROW(qnoise::pruned_task_config(lm, 0), qnoise::Error);
  EXPECT_THROW(qnoise::pruned_task_config({{"task", "image"}}, 2), qnoise::Error);
  const auto one_per_group = qnoise::pruned_task_config(lm, 4);  // depth 0 of 4: its pair's layer
  EXPECT_EQ(one_per_group["model"]["layers"], 1);
  EXPECT_EQ(one_per_group["model"]["share_every"], 1);
  EXPECT_EQ(qnoise::pruned_task_config({{"task", "lm"}, {"data", "unused"}, {"model", {{"layers", 5}}}}, 2)["model"]["layers"],
            3);  // depths 0, 2, 4
}

}  // namespace
