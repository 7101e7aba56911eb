// Quantized activations: calibration observes the input range, then inputs are fake-quantized on
// the 2^bits levels of that range; the state travels as a buffer of the layer. In training, the
// NoisyLayers scope noises the inputs of the layers whose target asks for it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "qnoise/activation_quant.h"
#include "qnoise/error.h"
#include "qnoise/noisy_layers.h"

namespace {

struct Net : torch::nn::Module {
  Net() {
    fc = register_module("fc", torch::nn::Linear(4, 3));
    embed = register_module("embed", torch::nn::Embedding(10, 4));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc->forward(qnoise::quantize_layer_input(*fc, x)); }
  torch::nn::Linear fc{nullptr};
  torch::nn::Embedding embed{nullptr};
};

}  // namespace

TEST(ActivationQuant, CalibrationObservesThenInputsSnapToTheRangesLevels) {
  Net net;
  const auto plain = torch::tensor({{-1.0f, 0.3f, 2.0f, 0.7f}});
  EXPECT_TRUE(torch::equal(net.forward(plain), net.fc->forward(plain)));  // nothing enabled
  EXPECT_EQ(qnoise::enable_input_quantization(net), std::vector<std::string>{"fc"});  // not the embedding
  // Observing: the input passes unchanged and the range widens.
  EXPECT_TRUE(torch::equal(qnoise::quantize_layer_input(*net.fc, plain), plain));
  qnoise::quantize_layer_input(*net.fc, torch::tensor({{0.5f, 3.1f, -0.2f, 0.0f}}));
  qnoise::finish_input_calibration(net);
  const auto state = net.fc->named_buffers(false)[qnoise::kInputQuantBuffer];
  EXPECT_FLOAT_EQ(state[0].item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(state[1].item<float>(), 3.1f);
  const float scale = 4.1f / 255;
  EXPECT_FLOAT_EQ(state[2].item<float>(), scale);
  EXPECT_FLOAT_EQ(state[3].item<float>(), std::nearbyint(1.0f / scale));
  // Quantizing: every value is (q - z) * s for an integer q in [0, 255], within s/2 of the input.
  const auto x = torch::linspace(-1.5, 3.5, 101);
  const auto q = qnoise::quantize_layer_input(*net.fc, x);
  const auto levels = q / scale + state[3].item<float>();
  EXPECT_LT((levels - levels.round()).abs().max().item<float>(), 1e-3);
  EXPECT_GE(levels.min().item<float>(), -1e-3);
  EXPECT_LE(levels.max().item<float>(), 255 + 1e-3);
  const auto inside = x.ge(-1.0) & x.le(3.1);
  EXPECT_LE((q - x).abs().masked_select(inside).max().item<float>(), scale / 2 + 1e-6);
  // Outside the range, inputs clip to the end levels.
  EXPECT_TRUE(q.masked_select(x.lt(-1.05)).eq(q.min()).all().item<bool>());
  EXPECT_TRUE(q.masked_select(x.gt(3.15)).eq(q.max()).all().item<bool>());
}

TEST(ActivationQuant, BadLayersAndMissingCalibrationAreErrors) {
  Net net;
  EXPECT_THROW(qnoise::enable_input_quantization(net, {"embed"}), qnoise::Error);
  EXPECT_THROW(qnoise::enable_input_quantization(net, {"nothing"}), qnoise::Error);
  qnoise::enable_input_quantization(net, {"fc"});
  EXPECT_EQ(qnoise::input_quantized_layers(net), std::vector<std::string>{"fc"});
  EXPECT_THROW(qnoise::finish_input_calibration(net), qnoise::Error);  // it saw nothing
}

// Found by the qnz_model fuzz target: a .qnz's input_quant zero point of -8.5e37 was cast to
// int64_t (undefined). Calibrated states come from files and are checked.
TEST(ActivationQuant, CalibratedStatesFromFilesAreChecked) {
  const auto state = [](float low, float high, float scale, float zero_point) {
    return torch::tensor({low, high, scale, zero_point});
  };
  EXPECT_NO_THROW(qnoise::check_calibrated_input_quant(state(-1, 1, 2.0f / 255, 128), "layer"));
  const std::vector<std::pair<torch::Tensor, std::string>> bad = {
      {state(-1, 1, 0.01f, -8.47383e37f), "zero point"},
      {state(-1, 1, 0.01f, 2.5f), "zero point"},
      {state(-1, 1, 0.01f, 256), "zero point"},
      {state(-1, 1, 0.01f, NAN), "zero point"},
      {state(-1, 1, 0, 0), "not calibrated"},
      {state(-1, 1, -0.5f, 0), "scale"},
      {state(-1, 1, INFINITY, 0), "scale"},
      {state(-INFINITY, 1, 0.01f, 0), "range"},
      {state(2, 1, 0.01f, 0), "range"},
      {torch::zeros({3}), "float32 [4]"},
  };
  for (const auto& [values, message] : bad) {
    try {
      qnoise::check_calibrated_input_quant(values, "tensor 'fc.input_quant'");
      ADD_FAILURE() << values;
    } catch (const qnoise::Error& e) {
      EXPECT_NE(std::string(e.what()).find("tensor 'fc.input_quant'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  }
  // The forward path checks too: a bad calibrated state is an error, not a cast.
  auto broken = state(-1, 1, 0.01f, -8.47383e37f);
  EXPECT_THROW(qnoise::quantize_input(broken, torch::ones({2})), qnoise::Error);
}

TEST(ActivationQuant, OtherBitsCarryTheirWidthInTheState) {
  Net net;
  qnoise::enable_input_quantization(net, {}, 4);
  const auto state = net.fc->named_buffers(false)[qnoise::kInputQuantBuffer];
  ASSERT_EQ(state.numel(), 5);
  EXPECT_EQ(qnoise::input_quant_bits(state), 4);
  qnoise::quantize_layer_input(*net.fc, torch::tensor({{-1.0f, 0.5f, 2.0f, 0.0f}}));
  qnoise::finish_input_calibration(net);
  const float scale = 3.0f / 15;
  EXPECT_FLOAT_EQ(state[2].item<float>(), scale);
  EXPECT_FLOAT_EQ(state[3].item<float>(), 5.0f);  // -(-1) / 0.2
  // 16 levels: (q - 5) * 0.2 for q in 0..15.
  const auto q = qnoise::quantize_layer_input(*net.fc, torch::linspace(-2, 3, 501));
  const auto levels = q / scale + 5;
  EXPECT_LT((levels - levels.round()).abs().max().item<float>(), 1e-3);
  EXPECT_EQ(std::get<0>(at::_unique(q)).numel(), 16);
  // A layer keeps its width: asking it for another is an error that names both.
  try {
    qnoise::enable_input_quantization(net, {"fc"}, 8);
    ADD_FAILURE();
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("4-bit"), std::string::npos) << e.what();
  }
  EXPECT_THROW(qnoise::enable_input_quantization(net, {"fc"}, 9), qnoise::Error);
  // Files' states: bits in 2..8, integers, and the zero point within their levels.
  EXPECT_NO_THROW(qnoise::check_calibrated_input_quant(torch::tensor({-1.0f, 2.0f, 0.2f, 5.0f, 4.0f}), "t"));
  EXPECT_THROW(qnoise::check_calibrated_input_quant(torch::tensor({-1.0f, 2.0f, 0.2f, 16.0f, 4.0f}), "t"),
               qnoise::Error);
  EXPECT_THROW(qnoise::check_calibrated_input_quant(torch::tensor({-1.0f, 2.0f, 0.2f, 5.0f, 9.0f}), "t"),
               qnoise::Error);
  EXPECT_THROW(qnoise::check_calibrated_input_quant(torch::tensor({-1.0f, 2.0f, 0.2f, 5.0f, 4.5f}), "t"),
               qnoise::Error);
}

TEST(ActivationQuant, TrainingNoiseTracksAMovingRangeAndQuantizesTheChosenShare) {
  auto state = qnoise::new_input_quant_state(4);
  // The first batch sets the range; later ones move it by 1% of the difference.
  const auto first = torch::tensor({-1.0f, 0.0f, 2.0f});
  EXPECT_TRUE(torch::equal(qnoise::noisy_quantize_input(state, first, 0.0), first));  // rate 0: unchanged
  EXPECT_FLOAT_EQ(state[0].item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(state[1].item<float>(), 2.0f);
  qnoise::noisy_quantize_input(state, torch::tensor({-3.0f, 12.0f}), 0.0);
  EXPECT_FLOAT_EQ(state[0].item<float>(), -1.02f);
  EXPECT_FLOAT_EQ(state[1].item<float>(), 2.1f);
  const float scale = 3.12f / 15;
  EXPECT_FLOAT_EQ(state[2].item<float>(), scale);
  EXPECT_FLOAT_EQ(state[3].item<float>(), std::nearbyint(1.02f / scale));
  // Rate 1 (QAT): every element is on the grid; the gradient is 1 inside the range, 0 outside.
  auto x = torch::linspace(-1.0, 2.0, 301).requires_grad_();
  auto all = qnoise::noisy_quantize_input(state, x, 1.0);
  const float s = state[2].item<float>(), z = state[3].item<float>();
  auto levels = all.detach() / s + z;
  EXPECT_LT((levels - levels.round()).abs().max().item<float>(), 1e-3);
  all.sum().backward();
  const float high = (15 - z) * s;
  EXPECT_TRUE(x.grad().masked_select(x.detach().lt(high - 1e-3)).eq(1).all().item<bool>());
  EXPECT_TRUE(x.grad().masked_select(x.detach().gt(high + 1e-3)).eq(0).all().item<bool>());
  // Rate 0.3: about 30% of the elements move to the grid, the rest pass unchanged.
  torch::manual_seed(1);
  const auto many = torch::rand({20000}) * 2 - 0.5;
  const auto noisy = qnoise::noisy_quantize_input(state, many, 0.3);
  const double changed = noisy.ne(many).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(changed, 0.3, 0.02);
  EXPECT_THROW(qnoise::noisy_quantize_input(state, many, 1.5), qnoise::Error);
}

TEST(ActivationQuant, PartialNoiseQuantizesTheChosenAndPassesGradientsStraightThrough) {
  auto state = qnoise::new_input_quant_state(4);
  qnoise::noisy_quantize_input(state, torch::tensor({-1.0f, 2.0f}), 0.0);
  // A [batch, channels, height, width] input, strided (a transposed view), half of it outside
  // the range: the fused CPU path must read it as the reference does.
  torch::manual_seed(3);
  const auto values = (torch::rand({8, 3, 5, 7}) * 6 - 2.5).transpose(2, 3);
  auto x = values.clone().requires_grad_();
  auto noisy = qnoise::noisy_quantize_input(state, x, 0.5);
  const auto grad_out = torch::rand(values.sizes());
  noisy.backward(grad_out);
  // The range this batch was quantized on (moved 1% towards the batch's).
  const float s = state[2].item<float>(), z = state[3].item<float>();
  const float low = -z * s, high = (15 - z) * s;
  // Chosen elements sit on the grid, clamped to the range; the others are the input exactly.
  const auto codes = noisy.detach() / s + z;
  const auto on_grid = (codes - codes.round()).abs().lt(1e-3) & codes.ge(-1e-3) & codes.le(15 + 1e-3);
  const auto unchanged = noisy.detach().eq(values);
  EXPECT_TRUE((on_grid | unchanged).all().item<bool>());
  const auto chosen = noisy.detach().ne(values);
  EXPECT_NEAR(chosen.to(torch::kDouble).mean().item<double>(), 0.5, 0.06);
  // The gradient: the output's, except 0 for chosen elements that were clamped.
  const auto clamped = chosen & (values.lt(low - s / 2 - 1e-4) | values.gt(high + s / 2 + 1e-4));
  const auto passed = ~chosen | (values.gt(low - s / 2 + 1e-4) & values.lt(high + s / 2 - 1e-4));
  EXPECT_GT(clamped.sum().item<int64_t>(), 100);
  EXPECT_TRUE(x.grad().masked_select(clamped).eq(0).all().item<bool>());
  EXPECT_TRUE(torch::equal(x.grad().masked_select(passed), grad_out.masked_select(passed)));
  // The draw comes from torch's generator: the same seed gives the same noise.
  auto state_a = state.clone(), state_b = state.clone();
  torch::manual_seed(5);
  const auto first = qnoise::noisy_quantize_input(state_a, values, 0.5);
  torch::manual_seed(5);
  EXPECT_TRUE(torch::equal(qnoise::noisy_quantize_input(state_b, values, 0.5), first));
}

TEST(ActivationQuant, NoisyLayersNoiseTheInputsOfTheirTargetsOnlyInsideTheScope) {
  Net net;
  qnoise::NoiseTarget target{"*", 1.0, 1, qnoise::NoiseFunction::parse("int4")};
  target.activation_bits = 4;
  qnoise::NoisyLayers noisy(net, {target});
  EXPECT_EQ(qnoise::input_quantized_layers(net), std::vector<std::string>{"fc"});  // not the embedding
  const auto state = net.fc->named_buffers(false)[qnoise::kInputQuantBuffer];
  EXPECT_EQ(qnoise::input_quant_bits(state), 4);
  net.train();
  const auto x = torch::tensor({{-1.0f, 0.3f, 2.0f, 0.7f}});
  {
    auto scope = noisy.draw();
    EXPECT_DOUBLE_EQ(qnoise::activation_noise_rate(*net.fc), 1.0);
    EXPECT_EQ(qnoise::activation_noise_rate(*net.embed), -1.0);
    const auto quantized = qnoise::quantize_layer_input(*net.fc, x);
    EXPECT_FLOAT_EQ(state[0].item<float>(), -1.0f);  // the first batch sets the range
    EXPECT_FLOAT_EQ(state[1].item<float>(), 2.0f);
    EXPECT_FALSE(torch::equal(quantized, x));  // 0.3 and 0.7 are not on the 0.2 grid
  }
  EXPECT_EQ(qnoise::activation_noise_rate(*net.fc), -1.0);
  // Outside the scope the calibrated state quantizes without moving, in training as in eval.
  const auto after = qnoise::quantize_layer_input(*net.fc, torch::tensor({{-5.0f, 9.0f, 0.0f, 0.0f}}));
  EXPECT_FLOAT_EQ(state[0].item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(after[0][0].item<float>(), -1.0f);  // clipped to the range
  net.eval();
  {
    auto scope = noisy.draw();  // eval mode: no noise, no tracking
    qnoise::quantize_layer_input(*net.fc, torch::tensor({{-5.0f, 9.0f, 0.0f, 0.0f}}));
    EXPECT_FLOAT_EQ(state[1].item<float>(), 2.0f);
  }
}
