#pragma once
// Product-quantized layers inside any torch::nn model, for iPQ finetuning: a layer's weight becomes
// centroids[codes] with the codes (assignments) fixed and the centroids trainable. Like NoisyLayers,
// it works through the layer's public `weight` member: inside a Scope from bind() the member holds
// the weight decoded from the centroids (differentiable in them), so the layer's own forward runs
// unchanged. A centroid's gradient is the *mean* of the gradients of the blocks assigned to it (as
// in the paper), so its step does not grow with how many blocks share it.
//
// Outside a scope the layer's registered parameter holds the decoded weight too (write_back), so
// evaluation, state dicts and exports see the quantized model; that parameter is frozen.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <vector>

#include "qnoise/block_layout.h"
#include "qnoise/compressed_weight.h"
#include "qnoise/weight_scope.h"

namespace qnoise {

class PqLayers {
 public:
  struct Layer {
    std::string name;  // as named_modules() gives it
    std::shared_ptr<torch::nn::Module> module;
    at::Tensor* weight_slot;  // the module's public `weight` member
    BlockLayout layout;
    at::Tensor codes;      // int64 [n_blocks], fixed
    at::Tensor centroids;  // float32 [K, block_size], a leaf that requires grad
    at::Tensor inverse_uses;  // [K, 1]: 1 / blocks per centroid, scales the centroids' gradient
    int centroid_bits = 16;   // how the file stores the centroids (compressed_weight.h)
  };

  // Quantizes layer `name` of `model` (a Linear, Conv2d or Embedding) to `codebook` [K, block_size]
  // and `codes` [n_blocks] (any integer dtype, as ProductQuantizer gives them), and writes the
  // decoded weight into its parameter. With centroid_bits 8 or 4 the forward pass sees the
  // centroids rounded as the file will store them (straight-through gradient), so finetuning
  // trains what is stored. Throws qnoise::Error when there is no such layer, it is already
  // quantized, or the shapes do not fit.
  void add(torch::nn::Module& model, const std::string& name, const BlockLayout& layout, const at::Tensor& codebook,
           const at::Tensor& codes, int centroid_bits = 16);

  using Scope = WeightScope<PqLayers>;
  // Puts the weights decoded from the centroids (with autograd) on every layer until the scope ends.
  [[nodiscard]] Scope bind();
  // Copies the current decoded weights into the layers' parameters (after an optimizer step).
  void write_back() const;

  // Recomputes each centroid's block count after the codes were overwritten in place (loading).
  void refresh_uses();

  bool contains(const std::string& name) const;
  const Layer* find(const std::string& name) const;
  std::vector<at::Tensor> centroid_parameters() const;
  const std::vector<Layer>& layers() const { return layers_; }
  // The layer's weight as stored in the compressed file (centroids in centroid_bits, narrow codes).
  CompressedWeight compressed(const Layer& layer) const;

 private:
  friend class WeightScope<PqLayers>;
  void restore() const;
  std::vector<Layer> layers_;
};

}  // namespace qnoise
