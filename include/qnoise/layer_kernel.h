#pragma once
// A layer computed from its compressed weight instead of a float one. The runtime (src/runtime)
// attaches a kernel to a Linear, Conv2d or Embedding module and frees the module's float weight;
// the layer owns its kernel (a child module named "packed", so it lives and dies with the layer).
// Models reach every such layer through run_layer(), tied_linear() or layer_weight(), which use the
// kernel when the layer has one and the module itself otherwise: a model written this way is the
// one definition of its architecture for training, evaluation and compressed inference.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>

#include "qnoise/activation_quant.h"

namespace qnoise {

class LayerKernel {
 public:
  virtual ~LayerKernel() = default;
  // What the module's forward computes: Linear x W^T + b on [..., in]; Conv2d on [N, C, H, W];
  // Embedding: the rows of the given ids.
  virtual at::Tensor forward(const at::Tensor& input) const = 0;
  // x W^T without bias, for an embedding table used as a (tied) output layer.
  virtual at::Tensor linear(const at::Tensor& input) const = 0;
  // x W without bias (x [..., out] -> [..., in]): a Linear weight used transposed, as a tied
  // output projection. This default decodes the weight whole.
  virtual at::Tensor transposed_linear(const at::Tensor& input) const;
  // The float weight, decoded (for the rare uses that need it whole).
  virtual at::Tensor weight() const = 0;
  // Bytes the kernel keeps in memory.
  virtual int64_t resident_bytes() const = 0;
};

// The module that holds a layer's kernel, registered as the layer's child "packed". It has no
// parameters or buffers, so state dicts and checkpoints do not see it.
class PackedLayerImpl : public torch::nn::Module {
 public:
  explicit PackedLayerImpl(std::shared_ptr<const LayerKernel> kernel);
  const LayerKernel& kernel() const { return *kernel_; }

 private:
  std::shared_ptr<const LayerKernel> kernel_;
};

// Name of the child module that holds a layer's kernel.
inline constexpr const char* kPackedLayerChild = "packed";

// Attaches `kernel` to `layer` (nullptr detaches), replacing any kernel it had.
void set_layer_kernel(torch::nn::Module& layer, std::shared_ptr<const LayerKernel> kernel);
// The layer's kernel, or nullptr.
const LayerKernel* layer_kernel(const torch::nn::Module& layer);

// The layer applied to x (input quantization, if calibrated, first).
template <typename ModuleHolder>
at::Tensor run_layer(ModuleHolder&& layer, const at::Tensor& x) {
  const at::Tensor input = quantize_layer_input(*layer, x);
  if (const LayerKernel* kernel = layer_kernel(*layer)) return kernel->forward(input);
  return layer->forward(input);
}

// x W^T for the layer's weight W, without bias (tied output layers).
at::Tensor tied_linear(const torch::nn::Module& layer, const at::Tensor& weight, const at::Tensor& x);
// x W for the layer's weight W [out, in] (a Linear weight used transposed).
at::Tensor transposed_linear(const torch::nn::Module& layer, const at::Tensor& weight, const at::Tensor& x);

// The layer's float weight: `weight` itself, or decoded by its kernel.
at::Tensor layer_weight(const torch::nn::Module& layer, const at::Tensor& weight);

}  // namespace qnoise
