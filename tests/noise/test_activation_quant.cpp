// Int8 activations: calibration observes the input range, then inputs are fake-quantized on the
// 256 levels of that range; the state travels as a buffer of the layer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

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
