#include "qnoise/input_range_observer.h"

#include <ATen/ATen.h>

#include <atomic>
#include <cmath>
#include <limits>

#include "qnoise/activation_quant.h"
#include "qnoise/error.h"

namespace qnoise {

namespace {

std::atomic<InputHistogramScope*> active_scope{nullptr};

}  // namespace

InputRangeObserver parse_input_range_observer(const std::string& name) {
  if (name == "minmax") return InputRangeObserver::MinMax;
  if (name == "mse") return InputRangeObserver::Mse;
  throw Error("unknown activation range observer '" + name + "' (minmax or mse)");
}

std::string to_string(InputRangeObserver observer) {
  return observer == InputRangeObserver::Mse ? "mse" : "minmax";
}

std::pair<float, float> mse_input_range(const at::Tensor& histogram, float min, float max, int bits) {
  QNOISE_CHECK(histogram.dim() == 1 && histogram.numel() > 0, "mse_input_range: the histogram must be 1-d");
  QNOISE_CHECK(std::isfinite(min) && std::isfinite(max) && min <= 0 && max >= 0,
               "mse_input_range: the span [", min, ", ", max, "] must be finite and hold 0");
  QNOISE_CHECK(bits >= 2 && bits <= 8, "mse_input_range: bits must be in 2..8, got ", bits);
  const at::Tensor counts = histogram.to(at::kDouble).contiguous();
  const double* c = counts.data_ptr<double>();
  const int64_t n = counts.numel();
  const double width = (static_cast<double>(max) - min) / static_cast<double>(n);
  if (!(width > 0)) return {min, max};
  // Prefix sums of count, count * x and count * x^2 over the bins' centres: the clipping error of
  // the bins beyond an edge is then a closed form of three of them.
  std::vector<double> p0(n + 1, 0.0), p1(n + 1, 0.0), p2(n + 1, 0.0);
  for (int64_t k = 0; k < n; ++k) {
    const double x = min + (static_cast<double>(k) + 0.5) * width;
    p0[k + 1] = p0[k] + c[k];
    p1[k + 1] = p1[k] + c[k] * x;
    p2[k + 1] = p2[k] + c[k] * x * x;
  }
  const auto edge = [&](int64_t k) { return min + static_cast<double>(k) * width; };
  // Edges at or below 0 for the low end, at or above 0 for the high end.
  const double zero_at = -static_cast<double>(min) / width;
  const int64_t last_low = std::min<int64_t>(n, static_cast<int64_t>(std::floor(zero_at)));
  const int64_t first_high = std::max<int64_t>(0, std::min<int64_t>(n, static_cast<int64_t>(std::ceil(zero_at))));
  const double levels = static_cast<double>((int64_t{1} << bits) - 1);
  double best_error = std::numeric_limits<double>::infinity();
  std::pair<float, float> best{min, max};
  for (int64_t i = 0; i <= last_low; ++i) {
    const double low = edge(i);
    const double below = low * low * p0[i] - 2 * low * p1[i] + p2[i];
    for (int64_t j = std::max(first_high, i + 1); j <= n; ++j) {
      const double high = edge(j);
      const double above = (p2[n] - p2[j]) - 2 * high * (p1[n] - p1[j]) + high * high * (p0[n] - p0[j]);
      const double step = (high - low) / levels;
      const double error = below + above + (p0[j] - p0[i]) * step * step / 12.0;
      if (error < best_error) {
        best_error = error;
        best = {static_cast<float>(std::min(low, 0.0)), static_cast<float>(std::max(high, 0.0))};
      }
    }
  }
  return best;
}

void count_input_histogram(at::Tensor& histogram, const at::Tensor& input, float min, float max) {
  QNOISE_CHECK(histogram.dim() == 1 && histogram.numel() > 0 && histogram.scalar_type() == at::kDouble,
               "count_input_histogram: the histogram must be 1-d float64");
  if (!(max > min)) return;
  at::NoGradGuard no_grad;
  const at::Tensor values = input.detach().to(at::kCPU, at::kFloat).flatten();
  const at::Tensor nonzero = values.masked_select(values.ne(0)).clamp(min, max);
  if (nonzero.numel() > 0) histogram += at::histc(nonzero, histogram.numel(), min, max).to(at::kDouble);
}

InputHistogramScope::InputHistogramScope(torch::nn::Module& model, int64_t bins) {
  QNOISE_CHECK(bins >= 2, "InputHistogramScope: bins must be at least 2, got ", bins);
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    const auto buffers = item.value()->named_buffers(/*recurse=*/false);
    const at::Tensor* state = buffers.find(kInputQuantBuffer);
    if (state == nullptr) continue;
    const int bits = input_quant_bits(*state);  // checks the state's shape and bits
    const at::Tensor values = state->to(at::kCPU).contiguous();
    const float* v = values.data_ptr<float>();
    if (v[2] != 0) continue;  // calibrated already (trained ranges)
    QNOISE_CHECK(std::isfinite(v[0]) && std::isfinite(v[1]), "quantized activations: layer '", item.key(),
                 "' saw no (finite) input in the first calibration pass");
    layers_.push_back({*state, at::zeros({bins}, at::kDouble), std::min(v[0], 0.0f), std::max(v[1], 0.0f), bits});
  }
  InputHistogramScope* expected = nullptr;
  QNOISE_CHECK(active_scope.compare_exchange_strong(expected, this), "InputHistogramScope: another scope is active");
}

InputHistogramScope::~InputHistogramScope() {
  InputHistogramScope* self = this;
  active_scope.compare_exchange_strong(self, nullptr);
}

bool InputHistogramScope::add(const at::Tensor& state, const at::Tensor& input) {
  for (Layer& layer : layers_) {
    if (layer.state.data_ptr() != state.data_ptr()) continue;
    count_input_histogram(layer.histogram, input, layer.min, layer.max);
    return true;
  }
  return false;
}

void InputHistogramScope::finish() {
  at::NoGradGuard no_grad;
  for (Layer& layer : layers_) {
    if (layer.histogram.sum().item<double>() == 0) continue;  // nothing counted (an empty span counts nothing)
    const auto [low, high] = mse_input_range(layer.histogram, layer.min, layer.max, layer.bits);
    layer.state.index_put_({0}, low);
    layer.state.index_put_({1}, high);
  }
}

InputHistogramScope* active_input_histograms() { return active_scope.load(std::memory_order_acquire); }

}  // namespace qnoise
