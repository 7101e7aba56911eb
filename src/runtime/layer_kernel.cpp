#include "qnoise/layer_kernel.h"

#include <ATen/ATen.h>

namespace qnoise {

PackedLayerImpl::PackedLayerImpl(std::shared_ptr<const LayerKernel> kernel)
    : torch::nn::Module("qnoise::PackedLayer"), kernel_(std::move(kernel)) {}

void set_layer_kernel(torch::nn::Module& layer, std::shared_ptr<const LayerKernel> kernel) {
  if (layer.named_children().contains(kPackedLayerChild)) layer.unregister_module(kPackedLayerChild);
  if (kernel) layer.register_module(kPackedLayerChild, std::make_shared<PackedLayerImpl>(std::move(kernel)));
}

const LayerKernel* layer_kernel(const torch::nn::Module& layer) {
  // The children's values alone: named_children() would copy their index of names too.
  for (const auto& child : layer.children())
    if (const auto* packed = dynamic_cast<const PackedLayerImpl*>(child.get())) return &packed->kernel();
  return nullptr;
}

at::Tensor tied_linear(const torch::nn::Module& layer, const at::Tensor& weight, const at::Tensor& x) {
  if (const LayerKernel* kernel = layer_kernel(layer)) return kernel->linear(x);
  return at::linear(x, weight);
}

at::Tensor LayerKernel::transposed_linear(const at::Tensor& input) const { return at::matmul(input, weight()); }

at::Tensor transposed_linear(const torch::nn::Module& layer, const at::Tensor& weight, const at::Tensor& x) {
  if (const LayerKernel* kernel = layer_kernel(layer)) return kernel->transposed_linear(x);
  return at::matmul(x, weight);
}

at::Tensor layer_weight(const torch::nn::Module& layer, const at::Tensor& weight) {
  if (const LayerKernel* kernel = layer_kernel(layer)) return kernel->weight();
  return weight;
}

}  // namespace qnoise
