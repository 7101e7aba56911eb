// Int8 activations: calibration observes the input range, then inputs are fake-quantized on the
// 256 levels of that range; the state travels as a buffer of the layer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qnoise/activation_quant.h"
#include "qnoise/error.h"

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
