// Weight layers made without their float weights (layer_factory.h): the runtime's way of building a
// compressed model's architecture. The modules must look exactly like initialised ones (shapes,
// options) while storing one value per weight, and normal construction must be unchanged.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qnoise/layer_factory.h"
#include "qnoise/transformer_lm.h"

TEST(LayerFactory, NormalConstructionInitialisesTheWeights) {
  EXPECT_FALSE(qnoise::constructing_weightless());
  auto linear = qnoise::make_linear(torch::nn::LinearOptions(6, 4));
  EXPECT_EQ(linear->weight.sizes(), (std::vector<int64_t>{4, 6}));
  EXPECT_FALSE(qnoise::is_weight_placeholder(linear->weight));
  EXPECT_GT(linear->weight.abs().sum().item<float>(), 0.0f);
  auto embedding = qnoise::make_embedding(torch::nn::EmbeddingOptions(10, 3).padding_idx(0));
  EXPECT_FALSE(qnoise::is_weight_placeholder(embedding->weight));
  EXPECT_EQ(embedding->weight[0].abs().sum().item<float>(), 0.0f);
}

TEST(LayerFactory, WeightlessLayersHaveTheirShapesAndOptionsButNoStorage) {
  {
    qnoise::WeightlessConstruction weightless;
    EXPECT_TRUE(qnoise::constructing_weightless());
    {
      qnoise::WeightlessConstruction nested;
    }
    EXPECT_TRUE(qnoise::constructing_weightless());  // the inner guard restores, not clears
    auto linear = qnoise::make_linear(torch::nn::LinearOptions(600, 400));
    EXPECT_EQ(linear->weight.sizes(), (std::vector<int64_t>{400, 600}));
    EXPECT_TRUE(qnoise::is_weight_placeholder(linear->weight));
    EXPECT_EQ(linear->weight.storage().nbytes(), 4u);
    EXPECT_EQ(linear->options.in_features(), 600);
    EXPECT_EQ(linear->options.out_features(), 400);
    ASSERT_TRUE(linear->bias.defined());  // biases are small and real: the file's values copy in
    EXPECT_EQ(linear->bias.sizes(), (std::vector<int64_t>{400}));
    EXPECT_FALSE(qnoise::is_weight_placeholder(linear->bias));
    auto no_bias = qnoise::make_linear(torch::nn::LinearOptions(8, 2).bias(false));
    EXPECT_FALSE(no_bias->bias.defined());
    auto embedding = qnoise::make_embedding(torch::nn::EmbeddingOptions(1000, 32).padding_idx(3));
    EXPECT_EQ(embedding->weight.sizes(), (std::vector<int64_t>{1000, 32}));
    EXPECT_TRUE(qnoise::is_weight_placeholder(embedding->weight));
    EXPECT_EQ(embedding->options.padding_idx(), 3);
  }
  EXPECT_FALSE(qnoise::constructing_weightless());
}

TEST(LayerFactory, AWeightlessLanguageModelStoresOnlyItsSmallTensors) {
  auto options = qnoise::TransformerLmOptions(5000, 128, 4, 512, 2).adaptive_input(true).adaptive_softmax(true).cutoffs({1000, 3000});
  int64_t weightless_bytes = 0, placeholders = 0;
  {
    qnoise::WeightlessConstruction weightless;
    qnoise::TransformerLm lm(options);
    for (const auto& p : lm->parameters()) {
      weightless_bytes += static_cast<int64_t>(p.storage().nbytes());
      placeholders += qnoise::is_weight_placeholder(p) ? 1 : 0;
    }
    // The position table is computed per call instead, and gives the table's rows.
    EXPECT_TRUE(qnoise::is_weight_placeholder(lm->named_buffers()["sinusoids"]));
    const auto tokens = torch::randint(1, 5000, {1, 3});
    lm->eval();
    EXPECT_EQ(lm->forward(tokens).sizes(), (std::vector<int64_t>{1, 3, 128}));  // runs with placeholders
  }
  const auto table = qnoise::sinusoidal_positions(50, 128);
  EXPECT_TRUE(torch::allclose(qnoise::sinusoidal_positions(7, 128, 40), table.narrow(0, 40, 7), 0, 1e-6));
  qnoise::TransformerLm normal(options);
  const int64_t float_bytes = 4 * qnoise::count_parameters(*normal);
  // 2 x (q, k, v, out, fc1, fc2) + 3 embeddings + 3 projections + the cluster layer.
  EXPECT_EQ(placeholders, 19);
  // What remains: biases and layer norms, about 1% of the weights here.
  EXPECT_LT(weightless_bytes, float_bytes / 50);
}
