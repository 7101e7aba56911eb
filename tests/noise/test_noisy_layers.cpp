#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qnoise/error.h"
#include "qnoise/noisy_layers.h"

using qnoise::NoiseFunction;
using qnoise::NoisyLayers;

namespace {

// An ordinary libtorch model that knows nothing of Quant-Noise: its forward reads the layers'
// members, as every libtorch model does.
struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl()
      : embed(register_module("embed", torch::nn::Embedding(10, 8))),
        conv(register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)))),
        fc1(register_module("fc1", torch::nn::Linear(8 + 4, 16))),
        fc2(register_module("fc2", torch::nn::Linear(16, 3))),
        norm(register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({16})))) {}

  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& images) {
    auto text = embed->forward(tokens).mean(1);
    auto pixels = conv->forward(images).mean({2, 3});
    return fc2->forward(torch::relu(norm->forward(fc1->forward(torch::cat({text, pixels}, 1)))));
  }

  torch::nn::Embedding embed;
  torch::nn::Conv2d conv;
  torch::nn::Linear fc1, fc2;
  torch::nn::LayerNorm norm;
};
TORCH_MODULE(TinyNet);

struct Batch {
  torch::Tensor tokens = torch::randint(0, 10, {5, 6});
  torch::Tensor images = torch::randn({5, 1, 6, 6});
};

}  // namespace

TEST(GlobMatch, MatchesWholeNamesWithStarsAndQuestionMarks) {
  EXPECT_TRUE(qnoise::glob_match("fc*", "fc1"));
  EXPECT_TRUE(qnoise::glob_match("*", "layers.0.ffn.fc1"));
  EXPECT_TRUE(qnoise::glob_match("layers.*.fc?", "layers.10.fc2"));
  EXPECT_TRUE(qnoise::glob_match("*ffn*", "layers.0.ffn.fc1"));
  EXPECT_FALSE(qnoise::glob_match("fc", "fc1"));
  EXPECT_FALSE(qnoise::glob_match("layers.*.fc?", "layers.1.fc10"));
  EXPECT_FALSE(qnoise::glob_match("*.attn", "layers.0.attn.q"));
}

TEST(NoisyLayers, PicksLayersByPatternFirstTargetWins) {
  TinyNet model;
  NoisyLayers noisy(*model, {{"fc1", 0.2, 4, NoiseFunction::pq()},
                             {"*", 0.5, 1, NoiseFunction::parse("int8")}});
  std::map<std::string, size_t> target_of;
  for (const auto& layer : noisy.layers()) target_of[layer.name] = layer.target;
  EXPECT_EQ(target_of.size(), 4u);  // embed, conv, fc1, fc2; not the LayerNorm
  EXPECT_EQ(target_of.at("fc1"), 0u);
  EXPECT_EQ(target_of.at("fc2"), 1u);
  EXPECT_EQ(target_of.at("conv"), 1u);
  EXPECT_EQ(target_of.at("embed"), 1u);
}

TEST(NoisyLayers, APatternThatMatchesNothingIsAnErrorListingTheLayers) {
  TinyNet model;
  try {
    NoisyLayers noisy(*model, {{"attention.*", 0.1, 4, NoiseFunction::pq()}});
    FAIL() << "expected an error";
  } catch (const qnoise::Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("attention.*"), std::string::npos) << message;
    EXPECT_NE(message.find("fc1"), std::string::npos) << message;
  }
}

TEST(NoisyLayers, ABlockSizeThatDoesNotDivideNamesTheLayer) {
  TinyNet model;
  try {
    NoisyLayers noisy(*model, {{"fc1", 0.1, 5, NoiseFunction::pq()}});
    FAIL() << "expected an error";
  } catch (const qnoise::Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("fc1"), std::string::npos) << message;
    EXPECT_NE(message.find("block_size 5"), std::string::npos) << message;
  }
}

TEST(NoisyLayers, NoiseLastsForTheScopeAndTheParameterIsRestoredUnchanged) {
  torch::manual_seed(0);
  TinyNet model;
  Batch batch;
  NoisyLayers noisy(*model, {{"conv", 0.3, 9, NoiseFunction::pq()}, {"*", 0.3, 4, NoiseFunction::pq()}});
  auto clean = model->forward(batch.tokens, batch.images).detach();
  auto fc1_before = model->fc1->weight.detach().clone();
  torch::Tensor noisy_output;
  {
    auto scope = noisy.draw();
    EXPECT_FALSE(model->fc1->weight.is_same(model->fc1->named_parameters()["weight"]));
    noisy_output = model->forward(batch.tokens, batch.images);
  }
  EXPECT_FALSE(torch::allclose(noisy_output, clean));
  EXPECT_TRUE(model->fc1->weight.is_same(model->fc1->named_parameters()["weight"]));
  EXPECT_TRUE(torch::equal(model->fc1->weight, fc1_before));
  EXPECT_TRUE(torch::equal(model->forward(batch.tokens, batch.images), clean));
}

TEST(NoisyLayers, EvalModeLeavesTheModelUntouched) {
  TinyNet model;
  Batch batch;
  NoisyLayers noisy(*model, {{"*", 0.5, 1, NoiseFunction::parse("int4")}});
  model->eval();
  auto clean = model->forward(batch.tokens, batch.images);
  auto scope = noisy.draw();
  EXPECT_TRUE(torch::equal(model->forward(batch.tokens, batch.images), clean));
}

TEST(NoisyLayers, GradientReachesTheParameterStraightThrough) {
  torch::manual_seed(1);
  auto linear = torch::nn::Linear(8, 4);
  torch::nn::Sequential model(linear);
  NoisyLayers noisy(*model, {{"*", 0.5, 2, NoiseFunction::pq()}});
  auto x = torch::randn({3, 8});
  {
    auto scope = noisy.draw();
    model->forward(x).sum().backward();
  }
  // d(sum(x W^T))/dW = 1^T x for every row, whatever blocks the noise dropped.
  auto expected = x.sum(0).unsqueeze(0).expand({4, 8});
  EXPECT_TRUE(torch::allclose(linear->weight.grad(), expected));
}

TEST(NoisyLayers, TrainingWithNoiseStillLearns) {
  torch::manual_seed(2);
  torch::nn::Sequential model(torch::nn::Linear(16, 32), torch::nn::ReLU(), torch::nn::Linear(32, 1));
  NoisyLayers noisy(*model, {{"*", 0.1, 4, NoiseFunction::pq()}});
  torch::optim::Adam optimizer(model->parameters(), 1e-2);
  auto x = torch::randn({256, 16});
  auto y = x.sum(1, true);
  auto loss_at = [&] { return torch::mse_loss(model->forward(x), y).item<double>(); };
  const double initial = loss_at();
  for (int step = 0; step < 300; ++step) {
    torch::Tensor loss;
    {
      auto scope = noisy.draw();
      loss = torch::mse_loss(model->forward(x), y);
    }
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
  model->eval();
  EXPECT_LT(loss_at(), initial * 0.05);
}
