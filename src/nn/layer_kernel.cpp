#include "qnoise/layer_kernel.h"

#include <ATen/ATen.h>

#include <atomic>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace qnoise {

namespace {

std::atomic<bool> any_kernel{false};
std::shared_mutex registry_mutex;

std::unordered_map<const torch::nn::Module*, std::shared_ptr<const LayerKernel>>& registry() {
  static std::unordered_map<const torch::nn::Module*, std::shared_ptr<const LayerKernel>> kernels;
  return kernels;
}

}  // namespace

void set_layer_kernel(const torch::nn::Module& layer, std::shared_ptr<const LayerKernel> kernel) {
  std::unique_lock lock(registry_mutex);
  if (kernel) {
    registry()[&layer] = std::move(kernel);
    any_kernel.store(true, std::memory_order_release);
  } else {
    registry().erase(&layer);
  }
}

const LayerKernel* layer_kernel(const torch::nn::Module& layer) {
  if (!any_kernel.load(std::memory_order_acquire)) return nullptr;
  std::shared_lock lock(registry_mutex);
  const auto found = registry().find(&layer);
  return found == registry().end() ? nullptr : found->second.get();
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
