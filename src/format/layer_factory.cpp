#include "qnoise/layer_factory.h"

#include <ATen/ATen.h>

namespace qnoise {

namespace {
thread_local bool weightless = false;
}  // namespace

WeightlessConstruction::WeightlessConstruction() : previous_(weightless) { weightless = true; }
WeightlessConstruction::~WeightlessConstruction() { weightless = previous_; }

bool constructing_weightless() { return weightless; }

at::Tensor weight_placeholder(c10::IntArrayRef shape, const at::TensorOptions& options) {
  return at::zeros({1}, options).expand(shape);
}

bool is_weight_placeholder(const at::Tensor& tensor) {
  return tensor.defined() && tensor.numel() > 1 &&
         tensor.storage().nbytes() <= static_cast<size_t>(tensor.element_size());
}

torch::nn::Linear make_linear(const torch::nn::LinearOptions& options) {
  if (!weightless) return torch::nn::Linear(options);
  // Built 1x1 (the module allocates and initialises its weight in its constructor), then given
  // its real options and a placeholder of its real shape.
  torch::nn::Linear layer(torch::nn::LinearOptions(1, 1).bias(options.bias()));
  layer->options = options;
  at::NoGradGuard no_grad;
  layer->weight.set_data(weight_placeholder({options.out_features(), options.in_features()}, layer->weight.options()));
  if (options.bias()) layer->bias.set_data(at::zeros({options.out_features()}, layer->bias.options()));
  return layer;
}

torch::nn::Embedding make_embedding(const torch::nn::EmbeddingOptions& options) {
  if (!weightless) return torch::nn::Embedding(options);
  torch::nn::Embedding layer(torch::nn::EmbeddingOptions(1, 1));
  layer->options = options;
  at::NoGradGuard no_grad;
  layer->weight.set_data(weight_placeholder({options.num_embeddings(), options.embedding_dim()}, layer->weight.options()));
  return layer;
}

}  // namespace qnoise
