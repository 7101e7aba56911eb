#pragma once
// Int8 activations (the paper's "iPQ + int8"): the input of each chosen Linear/Conv2d layer is
// fake-quantized per tensor to 8-bit affine levels whose range was observed on a few calibration
// batches. The state lives on the layer module itself, in a float32 buffer "input_quant" =
// {observed min, observed max, scale, zero point} (scale 0 while calibrating), so it travels with
// state dicts and .qnz files ("<layer>.input_quant") like any other tensor.
//
// Models call quantize_layer_input(layer, x) on what they feed each layer; without the buffer it
// returns x unchanged; until some layer of the process has it, without even looking.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <string>
#include <vector>

namespace qnoise {

inline constexpr const char* kInputQuantBuffer = "input_quant";

// Adds the buffer, observing, to every Linear and Conv2d layer of `model` (or the named ones).
// Returns the names of the layers it was added to. Throws qnoise::Error on a name that is not a
// Linear/Conv2d layer of the model.
std::vector<std::string> enable_input_quantization(torch::nn::Module& model,
                                                   const std::vector<std::string>& layers = {});
// Ends calibration: every observing layer gets the scale and zero point of its observed range.
// Throws qnoise::Error when a layer saw no input.
void finish_input_calibration(torch::nn::Module& model);
// Layers whose input is quantized (calibrated or not).
std::vector<std::string> input_quantized_layers(const torch::nn::Module& model);

// Observes or fake-quantizes `input` of `layer` as its buffer says; `input` itself otherwise.
at::Tensor quantize_layer_input(const torch::nn::Module& layer, const at::Tensor& input);

// The same on the state tensor itself, for layers that are not torch::nn modules (the Python
// package's): a fresh state observes; `layer` names it in errors.
at::Tensor new_input_quant_state();
at::Tensor quantize_input(at::Tensor& state, const at::Tensor& input);
void finish_input_calibration(at::Tensor& state, const std::string& layer);
// Throws qnoise::Error, prefixed by `where`, unless `state` is a calibrated float32 [4] state: a
// finite range, a finite positive scale and an integer zero point in [0, 255] (what files hold).
void check_calibrated_input_quant(const at::Tensor& state, const std::string& where);

}  // namespace qnoise
