#include "qnoise/efficientnet.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>
#include <string>

#include "qnoise/error.h"
#include "qnoise/noisy_layers.h"

namespace qnoise {
namespace {

int64_t count_parameters(torch::nn::Module& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  return n;
}

std::set<std::string> module_names(torch::nn::Module& model) {
  std::set<std::string> names;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) names.insert(item.key());
  return names;
}

TEST(EfficientNet, OutputIsBatchByClasses) {
  torch::manual_seed(0);
  EfficientNet model;
  EXPECT_EQ(model->forward(torch::randn({3, 1, 28, 28})).sizes(), (std::vector<int64_t>{3, 10}));
  model->eval();
  EXPECT_EQ(model->forward(torch::randn({1, 1, 28, 28})).sizes(), (std::vector<int64_t>{1, 10}));

  EfficientNet rgb(EfficientNetOptions().in_channels(3).n_classes(7).width_multiplier(0.5));
  EXPECT_EQ(rgb->forward(torch::randn({2, 3, 32, 32})).sizes(), (std::vector<int64_t>{2, 7}));
}

TEST(EfficientNet, ParameterCountGrowsWithWidthAndDepth) {
  EfficientNet base;
  EfficientNet wide(EfficientNetOptions().width_multiplier(2.0));
  EfficientNet deep(EfficientNetOptions().depth_multiplier(2.0));
  const int64_t n_base = count_parameters(*base), n_wide = count_parameters(*wide),
                n_deep = count_parameters(*deep);
  // 1x1 convs dominate, so doubling the width roughly quadruples the count.
  EXPECT_GT(n_wide, 3 * n_base);
  EXPECT_LT(n_wide, 5 * n_base);
  EXPECT_GT(n_deep, n_base);
  // Repeated blocks run at a stage's output width (wider than its first block's input), so
  // doubling the depth adds a little over one model's worth; stem and head are not repeated.
  EXPECT_LT(n_deep, 5 * n_base / 2);
  EfficientNet narrow(EfficientNetOptions().width_multiplier(0.5));
  EXPECT_LT(count_parameters(*narrow), n_base);

  ASSERT_EQ(base->n_stages(), deep->n_stages());
  for (size_t s = 0; s < base->n_stages(); ++s)
    EXPECT_EQ(deep->n_blocks(s), 2 * base->n_blocks(s)) << "stage " << s;
  EfficientNet deeper(EfficientNetOptions().depth_multiplier(1.2));
  EXPECT_EQ(deeper->n_blocks(1), 3u);  // ceil(2 * 1.2)

  EXPECT_EQ(round_channels(16, 1.0), 16);
  EXPECT_EQ(round_channels(16, 0.25), 8);
  EXPECT_EQ(round_channels(40, 1.5), 64);  // 60 rounds to 64
  EXPECT_EQ(round_channels(24, 2.0), 48);
}

TEST(EfficientNet, BlocksHaveResidualSqueezeExcitationAndStableNames) {
  EfficientNet model;
  // Stage 0: expand ratio 1, stride 1, 16 -> 16 channels.
  EXPECT_FALSE(model->block(0, 0)->has_expand());
  EXPECT_TRUE(model->block(0, 0)->has_residual());
  // Stage 1 strides in its first block only.
  EXPECT_FALSE(model->block(1, 0)->has_residual());
  EXPECT_TRUE(model->block(1, 1)->has_residual());
  EXPECT_TRUE(model->block(1, 0)->has_expand());
  EXPECT_TRUE(model->block(1, 0)->has_se());
  EXPECT_EQ(model->block(1, 0)->depthwise->options.groups(),
            model->block(1, 0)->depthwise->options.in_channels());
  EXPECT_THROW(model->block(9, 0), Error);
  EXPECT_THROW(model->block(0, 5), Error);

  const auto names = module_names(*model);
  for (const char* name : {"stem.conv", "stem.bn", "stages.0.0.depthwise", "stages.0.0.se.reduce",
                           "stages.0.0.project", "stages.1.0.expand", "stages.1.0.depthwise",
                           "stages.1.1.se.expand", "stages.3.1.project", "head.conv", "classifier"})
    EXPECT_TRUE(names.count(name)) << name;
  EXPECT_FALSE(names.count("stages.0.0.expand"));

  EfficientNet plain(EfficientNetOptions().se_ratio(0));
  EXPECT_FALSE(plain->block(1, 0)->has_se());
  EXPECT_LT(count_parameters(*plain), count_parameters(*model));
}

TEST(EfficientNet, ResidualBlockAddsItsInput) {
  torch::manual_seed(1);
  MBConvBlock block(16, 16, 4, 3, 1, 8);
  block->eval();
  torch::NoGradGuard no_grad;
  block->project_bn->weight.zero_();  // the branch now outputs the BN bias, 0
  const auto x = torch::randn({2, 16, 7, 7});
  EXPECT_TRUE(torch::allclose(block->forward(x), x));
}

TEST(EfficientNet, GradientsReachEveryParameter) {
  torch::manual_seed(2);
  EfficientNet model(EfficientNetOptions().dropout(0));
  const auto logits = model->forward(torch::randn({4, 1, 28, 28}));
  torch::nn::functional::cross_entropy(logits, torch::tensor({0, 3, 5, 9})).backward();
  for (const auto& item : model->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0) << item.key();
  }
}

TEST(EfficientNet, QuantNoiseAttachesToPointwiseDepthwiseAndClassifier) {
  torch::manual_seed(3);
  EfficientNet model;
  NoisyLayers noisy(*model, {{"*.se.*", 0.1, 4, NoiseFunction::pq()},
                             {"*.expand", 0.1, 8, NoiseFunction::pq()},
                             {"*.project", 0.1, 8, NoiseFunction::pq()},
                             {"head.conv", 0.1, 8, NoiseFunction::pq()},
                             {"*.depthwise", 0.1, 9, NoiseFunction::pq()},
                             {"stem.conv", 0.1, 9, NoiseFunction::pq()},
                             {"classifier", 0.1, 8, NoiseFunction::pq()}});
  int64_t n_weights = 0;
  for (const auto& item : model->named_modules("", false))
    if (item.value()->as<torch::nn::Conv2d>() || item.value()->as<torch::nn::Linear>()) ++n_weights;
  EXPECT_EQ(static_cast<int64_t>(noisy.layers().size()), n_weights);  // every weight is covered
  for (const auto& layer : noisy.layers())
    if (layer.name.find("depthwise") != std::string::npos) EXPECT_EQ(layer.layout.row_length(), 9);

  const auto x = torch::randn({2, 1, 28, 28});
  torch::Tensor loss;
  {
    auto scope = noisy.draw();
    loss = model->forward(x).logsumexp(1).mean();
  }
  loss.backward();
  EXPECT_TRUE(model->classifier->weight.grad().defined());
  // Every 1x1 conv and the classifier also take blocks of 8 (channels are multiples of 8).
  EXPECT_NO_THROW(NoisyLayers(*model, {{"*.se.*", 0.1, 8, NoiseFunction::pq()},
                                       {"*.expand", 0.1, 8, NoiseFunction::pq()}}));
}

TEST(EfficientNet, AdamStepsReduceTheLoss) {
  torch::manual_seed(4);
  EfficientNet model(EfficientNetOptions().width_multiplier(0.5).dropout(0));
  const auto x = torch::randn({16, 1, 28, 28});
  const auto y = torch::randint(0, 10, {16});
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  auto loss_now = [&] { return torch::nn::functional::cross_entropy(model->forward(x), y); };
  const double first = loss_now().item<double>();
  for (int step = 0; step < 15; ++step) {
    optimizer.zero_grad();
    loss_now().backward();
    optimizer.step();
  }
  EXPECT_LT(loss_now().item<double>(), 0.7 * first);
}

TEST(EfficientNet, BadOptionsAndInputsAreErrors) {
  EXPECT_THROW(EfficientNet(EfficientNetOptions().width_multiplier(0)), Error);
  EXPECT_THROW(EfficientNet(EfficientNetOptions().width_multiplier(-1)), Error);
  EXPECT_THROW(EfficientNet(EfficientNetOptions().depth_multiplier(0)), Error);
  EXPECT_THROW(EfficientNet(EfficientNetOptions().n_classes(0)), Error);
  EXPECT_THROW(EfficientNet(EfficientNetOptions().dropout(1.0)), Error);
  EXPECT_THROW(EfficientNet(EfficientNetOptions().se_ratio(1.5)), Error);
  EXPECT_THROW(EfficientNet(EfficientNetOptions().stages({})), Error);
  EXPECT_THROW(EfficientNet(EfficientNetOptions().stages({{4, 4, 1, 16, 1}})), Error);  // even kernel
  EXPECT_THROW(EfficientNet(EfficientNetOptions().stages({{4, 3, 3, 16, 1}})), Error);  // stride 3
  EXPECT_THROW(EfficientNet(EfficientNetOptions().stages({{4, 3, 1, 16, 0}})), Error);  // no repeats
  EfficientNet model(EfficientNetOptions().width_multiplier(0.5));
  EXPECT_THROW(model->forward(torch::randn({2, 3, 28, 28})), Error);
  EXPECT_THROW(model->forward(torch::randn({1, 28, 28})), Error);
  EXPECT_THROW(SmallCnn(SmallCnnOptions().channels(0)), Error);
}

TEST(SmallCnn, ShapesGradientsAndQuantNoise) {
  torch::manual_seed(5);
  SmallCnn model;
  const auto logits = model->forward(torch::randn({4, 1, 28, 28}));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{4, 10}));
  NoisyLayers noisy(*model, {{"conv1", 0.1, 9, NoiseFunction::pq()},
                             {"conv2", 0.1, 9, NoiseFunction::pq()},
                             {"conv3", 0.1, 8, NoiseFunction::pq()},
                             {"classifier", 0.1, 8, NoiseFunction::pq()}});
  EXPECT_EQ(noisy.layers().size(), 4u);
  torch::Tensor loss;
  {
    auto scope = noisy.draw();
    loss = model->forward(torch::randn({4, 1, 28, 28})).pow(2).mean();
  }
  loss.backward();
  for (const auto& item : model->named_parameters())
    EXPECT_TRUE(item.value().grad().defined()) << item.key();
  EXPECT_THROW(model->forward(torch::randn({2, 2, 28, 28})), Error);
}

}  // namespace
}  // namespace qnoise
