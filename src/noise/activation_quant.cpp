#include "qnoise/activation_quant.h"

#include <ATen/ATen.h>

#include <atomic>
#include <cmath>

#include "qnoise/error.h"
#include "qnoise/noisy_layers.h"

namespace qnoise {

namespace {

constexpr int64_t kLevels = 255;  // uint8 codes 0..255

// Set once any layer in the process gets the buffer: until then every layer's forward returns its
// input at once, without looking up (and copying) the module's buffer list, which training and
// float models would otherwise pay on every Linear/Conv2d call.
std::atomic<bool> any_layer_enabled{false};

// The layer's buffer (a handle on its storage), or an undefined tensor.
at::Tensor input_quant_state(const torch::nn::Module& layer) {
  const auto buffers = layer.named_buffers(/*recurse=*/false);  // a copy: keep it while reading
  const at::Tensor* found = buffers.find(kInputQuantBuffer);
  return found != nullptr ? *found : at::Tensor();
}

}  // namespace

std::vector<std::string> enable_input_quantization(torch::nn::Module& model, const std::vector<std::string>& layers) {
  std::vector<std::string> enabled;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    const WeightSlot slot = find_weight_slot(*item.value());
    const bool chosen = layers.empty() ? slot.weight != nullptr && slot.kind != LayerKind::Embedding
                                       : std::find(layers.begin(), layers.end(), item.key()) != layers.end();
    if (!chosen) continue;
    QNOISE_CHECK(slot.weight != nullptr && slot.kind != LayerKind::Embedding, "int8 activations: '", item.key(),
                 "' is not a Linear or Conv2d layer");
    if (!input_quant_state(*item.value()).defined()) {
      item.value()->register_buffer(kInputQuantBuffer, new_input_quant_state().to(slot.weight->device()));
    }
    enabled.push_back(item.key());
    any_layer_enabled.store(true, std::memory_order_relaxed);
  }
  for (const auto& name : layers)
    QNOISE_CHECK(std::find(enabled.begin(), enabled.end(), name) != enabled.end(), "int8 activations: the model has no layer '",
                 name, "'");
  return enabled;
}

at::Tensor new_input_quant_state() { return at::tensor({INFINITY, -INFINITY, 0.0f, 0.0f}); }

void finish_input_calibration(at::Tensor& state, const std::string& layer) {
  at::NoGradGuard no_grad;
  const at::Tensor values = state.to(at::kCPU);
  QNOISE_CHECK(std::isfinite(values[0].item<float>()) && std::isfinite(values[1].item<float>()),
               "int8 activations: layer '", layer, "' saw no (finite) input during calibration");
  const float low = std::min(values[0].item<float>(), 0.0f), high = std::max(values[1].item<float>(), 0.0f);
  // The range always holds 0 (padding and ReLU zeros stay exact); a constant input gets scale 1.
  const float scale = high > low ? (high - low) / kLevels : 1.0f;
  const float zero_point = std::min<float>(kLevels, std::max(0.0f, std::nearbyint(-low / scale)));
  state.index_put_({2}, scale);
  state.index_put_({3}, zero_point);
}

void finish_input_calibration(torch::nn::Module& model) {
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    at::Tensor state = input_quant_state(*item.value());
    if (state.defined()) finish_input_calibration(state, item.key());
  }
}

std::vector<std::string> input_quantized_layers(const torch::nn::Module& model) {
  std::vector<std::string> names;
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    if (input_quant_state(*item.value()).defined()) names.push_back(item.key());
  return names;
}

namespace {

void check_state_shape(const at::Tensor& state, const std::string& where) {
  QNOISE_CHECK(state.dim() == 1 && state.numel() == 4 && state.scalar_type() == at::kFloat, where,
               ": the input_quant state must be float32 [4] (min, max, scale, zero point), got ", state.sizes(), " ",
               state.scalar_type());
}

// A calibrated state (min, max, scale, zero point), checked: states come from files.
void check_calibrated_values(const float* values, const std::string& where) {
  const float low = values[0], high = values[1], scale = values[2], zero_point = values[3];
  QNOISE_CHECK(std::isfinite(low) && std::isfinite(high) && low <= high, where, ": the observed input range [", low,
               ", ", high, "] is not a finite range");
  QNOISE_CHECK(std::isfinite(scale) && scale > 0, where, ": the input scale ", scale,
               " is not a finite positive number (not calibrated?)");
  QNOISE_CHECK(zero_point >= 0 && zero_point <= kLevels && zero_point == std::nearbyint(zero_point), where,
               ": the input zero point ", zero_point, " is not an integer in [0, ", kLevels, "]");
}

}  // namespace

void check_calibrated_input_quant(const at::Tensor& state, const std::string& where) {
  check_state_shape(state, where);
  check_calibrated_values(state.to(at::kCPU).contiguous().data_ptr<float>(), where);
}

at::Tensor quantize_input(at::Tensor& state, const at::Tensor& input) {
  check_state_shape(state, "int8 activations");
  // Read once: this runs on every forward of a quantized layer.
  const at::Tensor copy = state.to(at::kCPU).contiguous();
  const float* values = copy.data_ptr<float>();
  if (values[2] == 0) {  // calibrating: widen the observed range
    at::NoGradGuard no_grad;
    const at::Tensor detached = input.detach();
    state.index_put_({0}, std::min(values[0], detached.min().item<float>()));
    state.index_put_({1}, std::max(values[1], detached.max().item<float>()));
    return input;
  }
  check_calibrated_values(values, "int8 activations");
  return at::fake_quantize_per_tensor_affine(input, values[2], static_cast<int64_t>(values[3]), 0, kLevels);
}

at::Tensor quantize_layer_input(const torch::nn::Module& layer, const at::Tensor& input) {
  if (!any_layer_enabled.load(std::memory_order_relaxed)) return input;
  at::Tensor state = input_quant_state(layer);
  if (!state.defined()) return input;
  return quantize_input(state, input);
}

}  // namespace qnoise
