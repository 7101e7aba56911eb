#pragma once
// The Python operator library's view of one compressed weight (compressed_weight.h): a TorchScript
// custom class, torch.classes.qnoise.CompressedTensor, whose state is the weight's .qnz form (its
// description and stored tensors, qnz_file.h), so it pickles and travels in torch.jit.save files.
#include <ATen/core/Tensor.h>
#include <ATen/core/Dict.h>
#include <torch/custom_class.h>

#include <string>
#include <tuple>

#include "qnoise/compressed_weight.h"

namespace qnoise::ops {

// (description as JSON text, stored tensors by suffix: "" for float values, ".codes", ...).
using CompressedTensorState = std::tuple<std::string, c10::Dict<std::string, at::Tensor>>;

// The state of `weight`, and its inverse, which checks every part's dtype and validates the weight
// (qnoise::Error naming the problem otherwise).
CompressedTensorState state_of(const CompressedWeight& weight);
CompressedWeight weight_of(const CompressedTensorState& state);

struct CompressedTensor : torch::CustomClassHolder {
  explicit CompressedTensor(CompressedWeight w) : weight(std::move(w)) {}
  CompressedWeight weight;
};

}  // namespace qnoise::ops
