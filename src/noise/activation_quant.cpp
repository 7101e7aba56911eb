#include "qnoise/activation_quant.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <atomic>
#include <cmath>
#include <tuple>
#include <utility>

#include "kernels/block_mask.h"
#include "noise/parallel_noise.h"
#include "qnoise/error.h"
#include "qnoise/input_range_observer.h"
#include "qnoise/noisy_layers.h"

namespace qnoise {

namespace {

// Set once any layer in the process gets the buffer: until then every layer's forward returns its
// input at once, without looking up (and copying) the module's buffer list, which training and
// float models would otherwise pay on every Linear/Conv2d call.
std::atomic<bool> any_layer_enabled{false};

// Moving-average factor of a range tracked in training (PyTorch's MovingAverageMinMaxObserver's).
constexpr float kRangeMomentum = 0.01f;

// The layer's buffer (a handle on its storage), or an undefined tensor.
at::Tensor input_quant_state(const torch::nn::Module& layer) {
  const auto buffers = layer.named_buffers(/*recurse=*/false);  // a copy: keep it while reading
  const at::Tensor* found = buffers.find(kInputQuantBuffer);
  return found != nullptr ? *found : at::Tensor();
}

void check_bits(int bits) {
  QNOISE_CHECK(bits >= 2 && bits <= 8, "quantized activations: bits must be in 2..8, got ", bits);
}

int64_t levels_for(int bits) { return (int64_t{1} << bits) - 1; }

// A state's values read once on the CPU: its shape and bits checked (states come from files).
struct StateValues {
  at::Tensor copy;
  const float* values;  // min, max, scale, zero point[, bits]
  int bits;
};

StateValues read_state(const at::Tensor& state, const std::string& where) {
  QNOISE_CHECK(state.dim() == 1 && (state.numel() == 4 || state.numel() == 5) && state.scalar_type() == at::kFloat,
               where, ": the input_quant state must be float32 [4] (min, max, scale, zero point) or [5] (and bits), got ",
               state.sizes(), " ", state.scalar_type());
  StateValues read{state.to(at::kCPU).contiguous(), nullptr, 8};
  read.values = read.copy.data_ptr<float>();
  if (state.numel() == 5) {
    const float bits = read.values[4];
    QNOISE_CHECK(bits >= 2 && bits <= 8 && bits == std::nearbyint(bits), where, ": the input bits ", bits,
                 " are not an integer in 2..8");
    read.bits = static_cast<int>(bits);
  }
  return read;
}

// Scale and zero point of the range [low, high] widened to hold 0 (padding and ReLU zeros stay
// exact); a constant input gets scale 1.
std::pair<float, float> qparams_for_range(float low, float high, int bits) {
  const int64_t levels = levels_for(bits);
  low = std::min(low, 0.0f);
  high = std::max(high, 0.0f);
  const float scale = high > low ? (high - low) / static_cast<float>(levels) : 1.0f;
  const float zero_point = std::min<float>(static_cast<float>(levels), std::max(0.0f, std::nearbyint(-low / scale)));
  return {scale, zero_point};
}

// A calibrated state (min, max, scale, zero point[, bits]), checked: states come from files.
void check_calibrated_values(const float* values, int bits, const std::string& where) {
  const float low = values[0], high = values[1], scale = values[2], zero_point = values[3];
  QNOISE_CHECK(std::isfinite(low) && std::isfinite(high) && low <= high, where, ": the observed input range [", low,
               ", ", high, "] is not a finite range");
  QNOISE_CHECK(std::isfinite(scale) && scale > 0, where, ": the input scale ", scale,
               " is not a finite positive number (not calibrated?)");
  QNOISE_CHECK(zero_point >= 0 && zero_point <= levels_for(bits) && zero_point == std::nearbyint(zero_point), where,
               ": the input zero point ", zero_point, " is not an integer in [0, ", levels_for(bits), "]");
}

// Fake-quantizes each element of a CPU float32 input with probability `rate`, in one pass of the
// fused noise kernels (blocks of one value, one range for the tensor). Backward passes the
// gradient straight through, except where a chosen value was clamped to the range, and redraws
// the choice from the seed instead of keeping a mask.
class ActivationNoiseFunction : public torch::autograd::Function<ActivationNoiseFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* context, const at::Tensor& input, double scale,
                            int64_t zero_point, int64_t bits, double rate, int64_t seed) {
    const at::Tensor contiguous = input.contiguous();
    at::Tensor out = at::empty_like(contiguous);
    if (contiguous.numel() == 0) return out;
    const AffineQParams qparams{static_cast<float>(scale), static_cast<int32_t>(zero_point)};
    kernels::ScalarNoiseSpec spec;
    spec.bits = static_cast<int>(bits);
    spec.qparams = &qparams;
    spec.per_tensor = true;
    const int64_t row_length = row_length_of(contiguous);
    kernels::scalar_noise(contiguous.data_ptr<float>(), out.data_ptr<float>(), contiguous.numel() / row_length,
                          row_length, 1, spec, BlockMaskSampler(rate, static_cast<uint64_t>(seed)));
    context->save_for_backward({contiguous});
    context->saved_data["scale"] = scale;
    context->saved_data["zero_point"] = zero_point;
    context->saved_data["bits"] = bits;
    context->saved_data["rate"] = rate;
    context->saved_data["seed"] = seed;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* context,
                                                 torch::autograd::variable_list grad_outputs) {
    const at::Tensor input = context->get_saved_variables()[0];
    const at::Tensor grad = grad_outputs[0].contiguous();
    at::Tensor grad_input = at::empty_like(input);
    if (input.numel() > 0) {
      const AffineQParams qparams{static_cast<float>(context->saved_data["scale"].toDouble()),
                                  static_cast<int32_t>(context->saved_data["zero_point"].toInt())};
      const int64_t row_length = row_length_of(input);
      kernels::scalar_noise_gradient(
          input.data_ptr<float>(), grad.data_ptr<float>(), grad_input.data_ptr<float>(), input.numel() / row_length,
          row_length, qparams, static_cast<int>(context->saved_data["bits"].toInt()),
          BlockMaskSampler(context->saved_data["rate"].toDouble(),
                           static_cast<uint64_t>(context->saved_data["seed"].toInt())));
    }
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }

 private:
  // The kernels walk rows; the choice depends only on the flat index, so any row length works.
  static int64_t row_length_of(const at::Tensor& input) {
    return input.dim() > 0 && input.size(-1) > 0 ? input.size(-1) : 1;
  }
};

}  // namespace

std::vector<std::string> enable_input_quantization(torch::nn::Module& model, const std::vector<std::string>& layers,
                                                   int bits) {
  check_bits(bits);
  std::vector<std::string> enabled;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    const WeightSlot slot = find_weight_slot(*item.value());
    const bool chosen = layers.empty() ? slot.weight != nullptr && slot.kind != LayerKind::Embedding
                                       : std::find(layers.begin(), layers.end(), item.key()) != layers.end();
    if (!chosen) continue;
    QNOISE_CHECK(slot.weight != nullptr && slot.kind != LayerKind::Embedding, "quantized activations: '", item.key(),
                 "' is not a Linear or Conv2d layer");
    const at::Tensor existing = input_quant_state(*item.value());
    if (!existing.defined()) {
      item.value()->register_buffer(kInputQuantBuffer, new_input_quant_state(bits).to(slot.weight->device()));
    } else {
      const int had = input_quant_bits(existing);
      QNOISE_CHECK(had == bits, "quantized activations: layer '", item.key(), "' has ", had,
                   "-bit inputs (trained with activation noise?), not ", bits);
    }
    enabled.push_back(item.key());
    any_layer_enabled.store(true, std::memory_order_relaxed);
  }
  for (const auto& name : layers)
    QNOISE_CHECK(std::find(enabled.begin(), enabled.end(), name) != enabled.end(),
                 "quantized activations: the model has no layer '", name, "'");
  return enabled;
}

at::Tensor new_input_quant_state(int bits) {
  check_bits(bits);
  if (bits == 8) return at::tensor({INFINITY, -INFINITY, 0.0f, 0.0f});
  return at::tensor({INFINITY, -INFINITY, 0.0f, 0.0f, static_cast<float>(bits)});
}

int input_quant_bits(const at::Tensor& state) { return read_state(state, "quantized activations").bits; }

void finish_input_calibration(at::Tensor& state, const std::string& layer) {
  at::NoGradGuard no_grad;
  const StateValues read = read_state(state, "layer '" + layer + "'");
  QNOISE_CHECK(std::isfinite(read.values[0]) && std::isfinite(read.values[1]), "quantized activations: layer '", layer,
               "' saw no (finite) input during calibration");
  const auto [scale, zero_point] = qparams_for_range(read.values[0], read.values[1], read.bits);
  state.index_put_({2}, scale);
  state.index_put_({3}, zero_point);
}

void restart_input_calibration(torch::nn::Module& model) {
  at::NoGradGuard no_grad;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    at::Tensor state = input_quant_state(*item.value());
    if (state.defined()) state.copy_(new_input_quant_state(input_quant_bits(state)));
  }
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

void check_calibrated_input_quant(const at::Tensor& state, const std::string& where) {
  const StateValues read = read_state(state, where);
  check_calibrated_values(read.values, read.bits, where);
}

at::Tensor quantize_input(at::Tensor& state, const at::Tensor& input) {
  // Read once: this runs on every forward of a quantized layer.
  const StateValues read = read_state(state, "quantized activations");
  const float* values = read.values;
  if (values[2] == 0) {  // calibrating: widen the observed range (or count the input, Mse's second pass)
    InputHistogramScope* histograms = active_input_histograms();
    if (histograms != nullptr && histograms->add(state, input)) return input;
    at::NoGradGuard no_grad;
    const at::Tensor detached = input.detach();
    state.index_put_({0}, std::min(values[0], detached.min().item<float>()));
    state.index_put_({1}, std::max(values[1], detached.max().item<float>()));
    return input;
  }
  check_calibrated_values(values, read.bits, "quantized activations");
  return at::fake_quantize_per_tensor_affine(input, values[2], static_cast<int64_t>(values[3]), 0,
                                             levels_for(read.bits));
}

at::Tensor noisy_quantize_input(at::Tensor& state, const at::Tensor& input, double rate) {
  QNOISE_CHECK(rate >= 0 && rate <= 1, "activation noise: the rate must be in [0, 1], got ", rate);
  const StateValues read = read_state(state, "activation noise");
  const float* values = read.values;
  const int bits = read.bits;
  float scale = 0, zero_point = 0;
  {
    at::NoGradGuard no_grad;
    const at::Tensor detached = input.detach();
    const auto [low_tensor, high_tensor] = at::aminmax(detached);
    const float batch_low = low_tensor.item<float>(), batch_high = high_tensor.item<float>();
    QNOISE_CHECK(std::isfinite(batch_low) && std::isfinite(batch_high),
                 "activation noise: a layer's input is not finite (the training diverged?)");
    const bool fresh = !std::isfinite(values[0]) || !std::isfinite(values[1]);
    const float low = fresh ? batch_low : values[0] + kRangeMomentum * (batch_low - values[0]);
    const float high = fresh ? batch_high : values[1] + kRangeMomentum * (batch_high - values[1]);
    std::tie(scale, zero_point) = qparams_for_range(low, high, bits);
    state.index_put_({0}, low);
    state.index_put_({1}, high);
    state.index_put_({2}, scale);
    state.index_put_({3}, zero_point);
  }
  if (rate == 0) return input;
  if (rate < 1 && input.device().is_cpu() && input.scalar_type() == at::kFloat)
    return ActivationNoiseFunction::apply(input, scale, static_cast<int64_t>(zero_point), bits, rate,
                                          static_cast<int64_t>(draw_noise_seed()));
  const at::Tensor quantized =
      at::fake_quantize_per_tensor_affine(input, scale, static_cast<int64_t>(zero_point), 0, levels_for(bits));
  if (rate == 1) return quantized;
  const at::Tensor chosen = at::empty_like(input, input.options().dtype(at::kBool)).bernoulli_(rate);
  return at::where(chosen, quantized, input);
}

at::Tensor quantize_layer_input(const torch::nn::Module& layer, const at::Tensor& input) {
  if (!any_layer_enabled.load(std::memory_order_relaxed)) return input;
  at::Tensor state = input_quant_state(layer);
  if (!state.defined()) return input;
  if (layer.is_training()) {
    const double rate = activation_noise_rate(layer);
    if (rate >= 0) return noisy_quantize_input(state, input, rate);
  }
  return quantize_input(state, input);
}

}  // namespace qnoise
