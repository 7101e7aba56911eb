#include "qnoise/runtime_model.h"

#include <ATen/ATen.h>
#include <malloc.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "qnoise/error.h"
#include "qnoise/layer_factory.h"
#include "qnoise/layer_kernel.h"
#include "qnoise/model_loading.h"
#include "runtime/layer_kernels.h"

namespace qnoise {

namespace {

// A 1x1 convolution that is a Linear over channels at every pixel.
bool pointwise(const torch::nn::Conv2dImpl& conv) {
  const auto& o = conv.options;
  const auto* padding = c10::get_if<torch::ExpandingArray<2>>(&o.padding());
  return (*o.kernel_size())[0] == 1 && (*o.kernel_size())[1] == 1 && (*o.stride())[0] == 1 &&
         (*o.stride())[1] == 1 && (*o.dilation())[0] == 1 && (*o.dilation())[1] == 1 && o.groups() == 1 &&
         padding != nullptr && (**padding)[0] == 0 && (**padding)[1] == 0;
}

at::Tensor bias_of(const CompressedModel& model, const std::string& layer) {
  const CompressedWeight* bias = model.find(layer + ".bias");
  return bias != nullptr ? bias->decode() : at::Tensor();
}

std::shared_ptr<const LayerKernel> make_kernel(const torch::nn::Module& module, const CompressedWeight& weight,
                                               const CompressedModel& model, const std::string& layer,
                                               const RuntimeOptions& options) {
  if (dynamic_cast<const torch::nn::EmbeddingImpl*>(&module) != nullptr) {
    if (weight.scheme == WeightScheme::PQ && weight.codes.scalar_type() != at::kByte) return nullptr;
    return std::make_shared<runtime::EmbeddingKernel>(weight, options);
  }
  const auto* conv = dynamic_cast<const torch::nn::Conv2dImpl*>(&module);
  const bool linear = dynamic_cast<const torch::nn::LinearImpl*>(&module) != nullptr;
  if (conv != nullptr && !pointwise(*conv)) {
    if (!c10::get_if<torch::enumtype::kZeros>(&conv->options.padding_mode())) return nullptr;
    return std::make_shared<runtime::DecodeOnUseConvKernel>(weight, bias_of(model, layer), conv->options);
  }
  if (!linear && conv == nullptr) return nullptr;
  std::unique_ptr<PackedLinearBase> packed = runtime::pack_linear(weight, options);
  if (!packed) return nullptr;
  return std::make_shared<runtime::PackedLinearKernel>(std::move(packed), bias_of(model, layer),
                                                       weight.shape, conv != nullptr);
}

}  // namespace

void release_freed_memory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

int64_t RuntimeLayers::resident_bytes() const {
  int64_t bytes = 0;
  for (const auto& kernel : kernels_) bytes += kernel->resident_bytes();
  return bytes;
}

std::set<std::string> RuntimeLayers::attach(torch::nn::Module& module, const CompressedModel& model,
                                            const RuntimeOptions& options) {
  std::set<std::string> taken;
  at::NoGradGuard no_grad;
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    const std::string name = item.key() + ".weight";
    const CompressedWeight* weight = model.find(name);
    if (weight == nullptr || weight->scheme == WeightScheme::Float32 || weight->scheme == WeightScheme::Float16)
      continue;
    std::shared_ptr<const LayerKernel> kernel = make_kernel(*item.value(), *weight, model, item.key(), options);
    if (!kernel) continue;
    at::Tensor parameter = item.value()->named_parameters(/*recurse=*/false)["weight"];
    QNOISE_CHECK(parameter.sizes().vec() == weight->shape, "tensor '", name, "' has shape ",
                 shape_to_string(weight->shape), " but the model expects ", shape_to_string(parameter.sizes().vec()));
    // A placeholder of the weight's shape that holds one value: the float weight never exists.
    parameter.set_data(weight_placeholder(weight->shape, parameter.options()));
    set_layer_kernel(*item.value(), kernel);
    kernels_.push_back(std::move(kernel));
    layers_.push_back(item.key());
    taken.insert(name);
  }
  return taken;
}

RuntimeLayers load_packed_module(torch::nn::Module& module, const CompressedModel& file, const RuntimeOptions& options,
                                 const std::vector<std::string>& recomputed_buffers) {
  RuntimeLayers layers;
  const std::set<std::string> taken = layers.attach(module, file, options);
  load_compressed_tensors(module, file, recomputed_buffers, taken);
  module.eval();
  release_freed_memory();
  return layers;
}

}  // namespace qnoise
