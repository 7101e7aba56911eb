// The MSE observer of quantized activations' ranges: the chosen range beats min-max where
// outliers stretch it, keeps nearly the whole range where there are none, and its second
// calibration pass narrows exactly the layers still observing.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "qnoise/activation_quant.h"
#include "qnoise/error.h"
#include "qnoise/input_range_observer.h"

namespace {

// Mean squared error of fake-quantizing `x` on the 2^bits levels of [low, high] (as calibration
// turns a range into a scale and zero point).
double quantization_mse(const torch::Tensor& x, float low, float high, int bits) {
  auto state = qnoise::new_input_quant_state(bits);
  state.index_put_({0}, low);
  state.index_put_({1}, high);
  qnoise::finish_input_calibration(state, "test");
  return (qnoise::quantize_input(state, x) - x).pow(2).mean().item<double>();
}

std::pair<float, float> mse_range_of(const torch::Tensor& x, int bits, int64_t bins = 2048) {
  const float low = std::min(x.min().item<float>(), 0.0f), high = std::max(x.max().item<float>(), 0.0f);
  auto histogram = torch::zeros({bins}, torch::kDouble);
  qnoise::count_input_histogram(histogram, x, low, high);
  return qnoise::mse_input_range(histogram, low, high, bits);
}

struct Net : torch::nn::Module {
  Net() {
    first = register_module("first", torch::nn::Linear(8, 8));
    second = register_module("second", torch::nn::Linear(8, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const auto hidden = torch::relu(first->forward(qnoise::quantize_layer_input(*first, x)));
    return second->forward(qnoise::quantize_layer_input(*second, hidden));
  }
  torch::nn::Linear first{nullptr}, second{nullptr};
};

}  // namespace

TEST(InputRangeObserver, OutliersAreClippedAndTheErrorFallsBelowMinMaxs) {
  torch::manual_seed(0);
  // Heavy tails: a Laplace-like sample with a few large values.
  auto x = torch::randn({50000}) * torch::rand({50000}).log().neg();
  x.index_put_({0}, 40.0f);
  const float low = x.min().item<float>(), high = x.max().item<float>();
  const auto [mse_low, mse_high] = mse_range_of(x, 4);
  EXPECT_GT(mse_low, low);
  EXPECT_LT(mse_high, high / 3);
  EXPECT_LE(mse_low, 0.0f);
  EXPECT_GE(mse_high, 0.0f);
  const double minmax_error = quantization_mse(x, low, high, 4), mse_error = quantization_mse(x, mse_low, mse_high, 4);
  EXPECT_LT(mse_error, 0.5 * minmax_error);
  // The pick is the best of the candidates: a slightly wider or narrower range is no better.
  EXPECT_LE(mse_error, quantization_mse(x, mse_low * 1.2f, mse_high * 1.2f, 4) * 1.02);
  EXPECT_LE(mse_error, quantization_mse(x, mse_low * 0.8f, mse_high * 0.8f, 4) * 1.02);
}

TEST(InputRangeObserver, UniformInputsKeepNearlyTheirWholeRange) {
  // Uniform on [-1, 1] at 4 bits: clipping to +-a costs (1 - a)^3 / 3, rounding (2a / 15)^2 / 12
  // per value; the optimum is a = 0.946.
  const auto x = torch::linspace(-1.0, 1.0, 200001);
  const auto [low, high] = mse_range_of(x, 4);
  EXPECT_NEAR(low, -0.946, 0.01);
  EXPECT_NEAR(high, 0.946, 0.01);
  // One-sided inputs (after ReLU) keep 0 as their low end; 8 bits clip less than 4.
  const auto positive = torch::linspace(0.0, 1.0, 100001);
  const auto [zero, top4] = mse_range_of(positive, 4);
  const auto [zero8, top8] = mse_range_of(positive, 8);
  EXPECT_EQ(zero, 0.0f);
  EXPECT_EQ(zero8, 0.0f);
  EXPECT_LT(top4, top8);
  EXPECT_GT(top8, 0.99f);
}

TEST(InputRangeObserver, TheSecondPassNarrowsOnlyLayersStillObserving) {
  Net net;
  net.eval();
  qnoise::enable_input_quantization(net, {"first"}, 4);
  // "second" has a range from training: the scope leaves it alone.
  qnoise::enable_input_quantization(net, {"second"}, 4);
  auto trained = net.second->named_buffers()[qnoise::kInputQuantBuffer];
  trained.copy_(torch::tensor({0.0f, 2.0f, 2.0f / 15, 0.0f, 4.0f}));
  torch::manual_seed(1);
  auto inputs = torch::randn({4000, 8});
  inputs.index_put_({0, 0}, 30.0f);
  torch::NoGradGuard no_grad;
  net.forward(inputs);  // first pass: min and max
  auto first_state = net.first->named_buffers()[qnoise::kInputQuantBuffer];
  EXPECT_FLOAT_EQ(first_state[1].item<float>(), 30.0f);
  {
    qnoise::InputHistogramScope histograms(net);
    EXPECT_THROW({ qnoise::InputHistogramScope another(net); }, qnoise::Error);  // one at a time
    EXPECT_EQ(qnoise::active_input_histograms(), &histograms);
    net.forward(inputs);
    EXPECT_FLOAT_EQ(first_state[1].item<float>(), 30.0f);  // counted, not widened
    histograms.finish();
  }
  EXPECT_EQ(qnoise::active_input_histograms(), nullptr);
  qnoise::finish_input_calibration(net);
  EXPECT_LT(first_state[1].item<float>(), 6.0f);
  EXPECT_GT(first_state[1].item<float>(), 1.5f);
  EXPECT_LT(first_state[0].item<float>(), -1.5f);
  EXPECT_TRUE(torch::equal(trained, torch::tensor({0.0f, 2.0f, 2.0f / 15, 0.0f, 4.0f})));
}

TEST(InputRangeObserver, NamesAndBadArgumentsAreChecked) {
  EXPECT_EQ(qnoise::parse_input_range_observer("mse"), qnoise::InputRangeObserver::Mse);
  EXPECT_EQ(qnoise::to_string(qnoise::parse_input_range_observer("minmax")), "minmax");
  EXPECT_THROW(qnoise::parse_input_range_observer("histogram"), qnoise::Error);
  EXPECT_THROW(qnoise::mse_input_range(torch::ones({4}), 1.0f, 2.0f, 4), qnoise::Error);  // no 0
  EXPECT_THROW(qnoise::mse_input_range(torch::ones({4}), -1.0f, 2.0f, 9), qnoise::Error);
  EXPECT_THROW(qnoise::mse_input_range(torch::ones({2, 2}), -1.0f, 2.0f, 4), qnoise::Error);
  auto floats = torch::zeros({4});
  EXPECT_THROW(qnoise::count_input_histogram(floats, torch::ones({3}), -1.0f, 1.0f), qnoise::Error);
  // Zeros are not counted (0 is always a level); the rest land in their bins.
  auto counts = torch::zeros({4}, torch::kDouble);
  qnoise::count_input_histogram(counts, torch::tensor({0.0f, 0.0f, -0.9f, 0.3f, 0.8f, 5.0f}), -1.0f, 1.0f);
  EXPECT_TRUE(torch::equal(counts, torch::tensor({1.0, 0.0, 1.0, 2.0}, torch::kDouble)));
  // An all-zero span keeps itself.
  const auto [low, high] = qnoise::mse_input_range(torch::zeros({4}), 0.0f, 0.0f, 4);
  EXPECT_EQ(low, 0.0f);
  EXPECT_EQ(high, 0.0f);
}
