#pragma once
// How calibration picks the range of a quantized layer input (activation_quant.h). MinMax takes
// the smallest and largest input seen, so one outlier stretches the 2^bits levels over values that
// almost never occur; at 4 bits that costs most of a model's accuracy. Mse picks, from a histogram
// of the calibration inputs over the min-max range, the range whose levels give the least expected
// squared error: clipping error for the values outside, a uniform rounding error (scale^2 / 12) for
// those inside (PyTorch's HistogramObserver minimizes the same kind of error). It needs a second
// pass over the calibration data, after the first found each layer's min and max.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <string>
#include <utility>
#include <vector>

namespace qnoise {

enum class InputRangeObserver { MinMax, Mse };

// "minmax" or "mse"; throws qnoise::Error on other names.
InputRangeObserver parse_input_range_observer(const std::string& name);
std::string to_string(InputRangeObserver observer);

// The range [low, high] (low <= 0 <= high, both on bin edges) with the least expected squared
// error at `bits` over `histogram`: counts of equal-width bins spanning [min, max], a range that
// holds 0. Values exactly 0 are left out of the histogram: 0 is always a level.
std::pair<float, float> mse_input_range(const at::Tensor& histogram, float min, float max, int bits);

// Adds `input`'s non-zero values, clamped to [min, max], to `histogram` (float64 counts of equal
// bins spanning [min, max]): what mse_input_range reads. An empty span counts nothing.
void count_input_histogram(at::Tensor& histogram, const at::Tensor& input, float min, float max);

// The second calibration pass of the Mse observer. While the scope lives, every layer of `model`
// that is observing (its range found by a first pass, not yet finished) adds its inputs to a
// histogram over that range instead of widening it; finish() then narrows each layer's range to
// mse_input_range's. Layers with ranges from training are left alone. One scope at a time.
class InputHistogramScope {
 public:
  explicit InputHistogramScope(torch::nn::Module& model, int64_t bins = 2048);
  ~InputHistogramScope();
  InputHistogramScope(const InputHistogramScope&) = delete;
  InputHistogramScope& operator=(const InputHistogramScope&) = delete;

  // Called by quantize_input on an observing state: true when the state is one of this scope's
  // layers (its input is then counted).
  bool add(const at::Tensor& state, const at::Tensor& input);
  void finish();

 private:
  struct Layer {
    at::Tensor state;      // the layer's buffer (shares its storage)
    at::Tensor histogram;  // float64 counts of the non-zero inputs
    float min, max;        // the histogram's span: the first pass's range, widened to hold 0
    int bits;
  };
  std::vector<Layer> layers_;
};

// The active scope, or null (quantize_input asks it).
InputHistogramScope* active_input_histograms();

}  // namespace qnoise
