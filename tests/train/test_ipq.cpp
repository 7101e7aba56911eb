// iPQ: plans, which layers each stage takes, the staged run with finetuning, resuming at a stage.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "qnoise/error.h"
#include "qnoise/ipq.h"
#include "qnoise/trainer.h"
#include "train/small_tasks.h"

namespace {

namespace fs = std::filesystem;
using qnoise::testing::quiet_ipq;
using qnoise::testing::small_cnn_task;

std::string temp_path(const std::string& name) { return ::testing::TempDir() + name; }

}  // namespace

TEST(QuantizationPlan, ParsesAndRejectsBadPlans) {
  const auto plan = qnoise::testing::small_cnn_plan(5);
  ASSERT_EQ(plan.stages.size(), 2u);
  EXPECT_EQ(plan.stages[1].block_size, 9);
  EXPECT_EQ(qnoise::to_json(qnoise::parse_quantization_plan(qnoise::to_json(plan))), qnoise::to_json(plan));
  // K follows the layer's size: at most one centroid per blocks_per_centroid (4) blocks.
  EXPECT_EQ(plan.centroids_for(plan.stages[0], 1000), 16);
  EXPECT_EQ(plan.centroids_for(plan.stages[0], 20), 5);
  EXPECT_EQ(plan.stages[0].centroid_bits, 16);
  EXPECT_EQ(qnoise::parse_quantization_plan({{"stages", {{{"layers", {"x"}}, {"centroid_bits", 4}}}}})
                .stages[0].centroid_bits, 4);
  // Scalar stages: a range per channel unless "ranges" says tensor; written back only when set.
  const auto tensor_plan = qnoise::parse_quantization_plan(
      {{"stages", {{{"layers", {"x"}}, {"scheme", "int4"}, {"ranges", "tensor"}}, {{"layers", {"y"}}, {"scheme", "int8"}}}}});
  EXPECT_TRUE(tensor_plan.stages[0].per_tensor);
  EXPECT_FALSE(tensor_plan.stages[1].per_tensor);
  EXPECT_EQ(qnoise::to_json(tensor_plan)["stages"][0]["ranges"], "tensor");
  EXPECT_FALSE(qnoise::to_json(tensor_plan)["stages"][1].contains("ranges"));
  for (const auto& bad : std::vector<nlohmann::json>{
           {{"stages", {{{"layers", {"x"}}, {"scheme", "int4"}, {"ranges", "row"}}}}},
           {{"stages", {{{"layers", {"x"}}, {"ranges", "tensor"}}}}},  // pq has no ranges
           {{"stages", nlohmann::json::array()}},
           {{"stages", {{{"layers", {"x"}}, {"block_size", 0}}}}},
           {{"stages", {{{"layers", {"x"}}, {"n_centroids", 70000}}}}},
           {{"stages", {{{"layers", {"x"}}, {"centroid_bits", 6}}}}},
           {{"stages", {{{"block_size", 8}}}}},
           {{"stages", {{{"layers", {"x"}}}}}, {"finetune_step", 3}},
           {{"stages", {{{"layers", {"x"}}, {"bloc_size", 8}}}}},
           {{"stages", {{{"layers", {"x"}}}}}, {"rest", "int8"}},
           {{"stages", {{{"layers", {"x"}}}}}, {"lr", "fast"}},
           // Floats where integers belong were cast, undefined beyond the type's range (UBSan).
           {{"stages", {{{"layers", {"x"}}, {"block_size", 1e300}}}}},
           {{"stages", {{{"layers", {"x"}}, {"block_size", 8.5}}}}},
           {{"stages", {{{"layers", {"x"}}, {"centroid_bits", 1e300}}}}},
           {{"stages", {{{"layers", {"x"}}}}}, {"kmeans_iterations", 1e300}},
           {{"stages", {{{"layers", {"x"}}}}}, {"seed", 1e300}}})
    EXPECT_THROW(qnoise::parse_quantization_plan(bad), qnoise::Error) << bad.dump();
  EXPECT_THROW(qnoise::read_quantization_plan("/nonexistent/plan.json"), qnoise::Error);
}

TEST(QuantizationPlan, StagesTakeLayersInOrderAndBadPatternsAreNamed) {
  auto task = small_cnn_task();
  const auto layers = qnoise::resolve_plan_layers(task->model(), qnoise::testing::small_cnn_plan(0));
  EXPECT_EQ(layers[0], (std::vector<std::string>{"conv3", "classifier"}));
  EXPECT_EQ(layers[1], (std::vector<std::string>{"conv1", "conv2"}));  // conv3 went to the first stage
  auto plan = qnoise::testing::small_cnn_plan(0);
  plan.stages[1].layers.push_back("decoder.*");
  try {
    qnoise::resolve_plan_layers(task->model(), plan);
    FAIL();
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'decoder.*' matches no"), std::string::npos) << e.what();
  }
  plan = qnoise::testing::small_cnn_plan(0);
  plan.stages[0].block_size = 5;  // conv3 rows are 16 long
  try {
    qnoise::resolve_plan_layers(task->model(), plan);
    FAIL();
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'conv3'"), std::string::npos) << e.what();
  }
}

TEST(Ipq, QuantizesEveryPlannedLayerAndFinetunesTheCentroids) {
  auto task = small_cnn_task();
  qnoise::PqLayers pq;
  const auto result = qnoise::run_ipq(*task, pq, quiet_ipq(qnoise::testing::small_cnn_plan(3)));
  ASSERT_EQ(result.layers.size(), 4u);
  ASSERT_EQ(pq.layers().size(), 4u);
  for (const auto& layer : pq.layers()) {
    // The layer's parameter holds exactly the stored (float16) codebook lookup.
    const auto stored = pq.compressed(layer);
    EXPECT_TRUE(torch::equal(stored.decode(), layer.module->named_parameters(false)["weight"])) << layer.name;
    EXPECT_LE(layer.centroids.size(0), 16);
  }
  // Finetuning after the last stage moved the first stage's centroids (they had gradients).
  EXPECT_TRUE(pq.layers()[0].centroids.grad().defined());
  EXPECT_GT(pq.layers()[0].centroids.grad().abs().sum().item<double>(), 0);
  EXPECT_TRUE(result.metrics.count("valid"));
}

TEST(Ipq, StoppedAfterAStageAndResumedEqualsAnUninterruptedRun) {
  const auto checkpoint = temp_path("ipq_stages.pt");
  fs::remove(checkpoint);
  auto whole = small_cnn_task();
  qnoise::PqLayers whole_pq;
  qnoise::run_ipq(*whole, whole_pq, quiet_ipq(qnoise::testing::small_cnn_plan(4)));

  auto first = small_cnn_task();
  qnoise::PqLayers first_pq;
  auto options = quiet_ipq(qnoise::testing::small_cnn_plan(4), checkpoint);
  options.stop_after_stage = 1;
  EXPECT_TRUE(qnoise::run_ipq(*first, first_pq, options).stopped_early);
  EXPECT_EQ(first_pq.layers().size(), 2u);

  auto second = small_cnn_task();
  qnoise::PqLayers second_pq;
  options.stop_after_stage = 0;
  options.resume = true;
  qnoise::run_ipq(*second, second_pq, options);
  ASSERT_EQ(second_pq.layers().size(), 4u);
  const auto a = whole->model().named_parameters(), b = second->model().named_parameters();
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  for (size_t i = 0; i < 4; ++i)
    EXPECT_TRUE(torch::equal(whole_pq.layers()[i].centroids, second_pq.layers()[i].centroids)) << i;

  // Another plan cannot resume from these stages.
  auto other = small_cnn_task();
  qnoise::PqLayers other_pq;
  auto changed = options;
  changed.plan.stages[0].n_centroids = 8;
  EXPECT_THROW(qnoise::run_ipq(*other, other_pq, changed), qnoise::Error);
}
