#pragma once
// Quantized activations (the paper's "iPQ + int8", and its int4 / int8 rows, which quantize
// activations as well as weights): the input of each chosen Linear/Conv2d layer is fake-quantized
// per tensor to 2^bits affine levels whose range was observed on a few calibration batches, or
// tracked in training with activation noise. The state lives on the layer module itself, in a
// float32 buffer "input_quant" = {observed min, observed max, scale, zero point} for 8 bits, with
// a fifth value, the bits, for other widths (scale 0 while calibrating), so it travels with state
// dicts, checkpoints and .qnz files ("<layer>.input_quant") like any other tensor.
//
// Models call quantize_layer_input(layer, x) on what they feed each layer; without the buffer it
// returns x unchanged; until some layer of the process has it, without even looking. In training
// mode, a layer that the active NoisyLayers scope noises (NoiseTarget::activation_bits) tracks its
// range as a moving average of each batch's min and max (factor 0.01, as PyTorch's
// MovingAverageMinMaxObserver) and fake-quantizes each input element with the target's rate (1:
// every element, QAT); the gradient passes straight through inside the range.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <string>
#include <vector>

namespace qnoise {

inline constexpr const char* kInputQuantBuffer = "input_quant";

// Adds the buffer, observing, for `bits` (2..8) to every Linear and Conv2d layer of `model` (or
// the named ones); layers that have one keep it. Returns the names of the layers. Throws
// qnoise::Error on a name that is not a Linear/Conv2d layer of the model, or a layer whose
// existing state is for other bits.
std::vector<std::string> enable_input_quantization(torch::nn::Module& model,
                                                   const std::vector<std::string>& layers = {}, int bits = 8);
// Starts calibration again on every layer with an input state, trained or calibrated: each
// observes afresh at its bits (a model trained with activation noise whose ranges are replaced).
void restart_input_calibration(torch::nn::Module& model);
// Ends calibration: every observing layer gets the scale and zero point of its observed range.
// Throws qnoise::Error when a layer saw no input.
void finish_input_calibration(torch::nn::Module& model);
// Layers whose input is quantized (calibrated or not).
std::vector<std::string> input_quantized_layers(const torch::nn::Module& model);

// Observes or fake-quantizes `input` of `layer` as its buffer says (with noise in training, see
// above); `input` itself otherwise.
at::Tensor quantize_layer_input(const torch::nn::Module& layer, const at::Tensor& input);

// The same on the state tensor itself, for layers that are not torch::nn modules (the Python
// package's): a fresh state observes; `layer` names it in errors.
at::Tensor new_input_quant_state(int bits = 8);
at::Tensor quantize_input(at::Tensor& state, const at::Tensor& input);
void finish_input_calibration(at::Tensor& state, const std::string& layer);
// Training with activation noise: updates the state's moving-average range from `input` and
// returns `input` with each element fake-quantized with probability `rate` (torch's generator).
at::Tensor noisy_quantize_input(at::Tensor& state, const at::Tensor& input, double rate);
// The bits of a state (float32 [4]: 8; [5]: its last value). Throws qnoise::Error on other shapes.
int input_quant_bits(const at::Tensor& state);
// Throws qnoise::Error, prefixed by `where`, unless `state` is a calibrated float32 [4] or [5]
// state: a finite range, a finite positive scale, an integer zero point in [0, 2^bits - 1] and
// integer bits in 2..8 (what files hold).
void check_calibrated_input_quant(const at::Tensor& state, const std::string& where);

}  // namespace qnoise
