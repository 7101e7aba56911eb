#pragma once
// The weight layers (Linear, Embedding) of qnoise's models are made here. Normally these are the
// plain torch::nn modules, initialised. While a WeightlessConstruction lives on the thread, they
// are the same modules with a placeholder weight (weight_placeholder: the weight's shape over one
// stored value) and no initialisation: the runtime builds a compressed model's architecture this
// way, so that its float weights never exist, not even while loading (a model whose float weights
// exceed the free memory still loads in about its compressed size). Each placeholder must then be
// replaced, by a layer kernel (runtime_model.h) or by the file's values (load_compressed_tensors).
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

namespace qnoise {

class WeightlessConstruction {
 public:
  WeightlessConstruction();
  ~WeightlessConstruction();
  WeightlessConstruction(const WeightlessConstruction&) = delete;
  WeightlessConstruction& operator=(const WeightlessConstruction&) = delete;

 private:
  bool previous_;
};

// Whether a WeightlessConstruction lives on this thread (the models skip their own initialisation).
bool constructing_weightless();

torch::nn::Linear make_linear(const torch::nn::LinearOptions& options);
torch::nn::Embedding make_embedding(const torch::nn::EmbeddingOptions& options);

// A tensor of `shape` that stores one zero (stride 0): stands for a weight held elsewhere.
at::Tensor weight_placeholder(c10::IntArrayRef shape, const at::TensorOptions& options);
// Whether `tensor` is such a placeholder (several elements over one stored value).
bool is_weight_placeholder(const at::Tensor& tensor);

}  // namespace qnoise
