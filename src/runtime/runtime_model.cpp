#include "qnoise/runtime_model.h"

#include <ATen/ATen.h>
#include <malloc.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <optional>

#include "qnoise/error.h"
#include "qnoise/layer_factory.h"
#include "qnoise/layer_kernel.h"
#include "qnoise/layer_kernel_factory.h"
#include "qnoise/model_loading.h"

namespace qnoise {

namespace {

at::Tensor bias_of(const CompressedModel& model, const std::string& layer) {
  const CompressedWeight* bias = model.find(layer + ".bias");
  return bias != nullptr ? bias->decode() : at::Tensor();
}

// What the module computes besides its weight; nullopt for modules without kernels.
std::optional<LayerGeometry> geometry_of(const torch::nn::Module& module) {
  LayerGeometry g;
  if (dynamic_cast<const torch::nn::EmbeddingImpl*>(&module) != nullptr) {
    g.kind = LayerKind::Embedding;
    return g;
  }
  if (dynamic_cast<const torch::nn::LinearImpl*>(&module) != nullptr) return g;
  const auto* conv = dynamic_cast<const torch::nn::Conv2dImpl*>(&module);
  if (conv == nullptr) return std::nullopt;
  const auto& o = conv->options;
  const auto* padding = c10::get_if<torch::ExpandingArray<2>>(&o.padding());
  if (padding == nullptr) return std::nullopt;  // "same" / "valid": left to the module
  g.kind = LayerKind::Conv2d;
  g.stride = {o.stride()->begin(), o.stride()->end()};
  g.padding = {(*padding)->begin(), (*padding)->end()};
  g.dilation = {o.dilation()->begin(), o.dilation()->end()};
  g.groups = o.groups();
  g.zero_padding = c10::get_if<torch::enumtype::kZeros>(&o.padding_mode()) != nullptr;
  return g;
}

std::shared_ptr<const LayerKernel> make_kernel(const torch::nn::Module& module, const CompressedWeight& weight,
                                               const CompressedModel& model, const std::string& layer,
                                               const RuntimeOptions& options) {
  const std::optional<LayerGeometry> geometry = geometry_of(module);
  if (!geometry) return nullptr;
  const at::Tensor bias = geometry->kind == LayerKind::Embedding ? at::Tensor() : bias_of(model, layer);
  return make_layer_kernel(weight, bias, *geometry, options);
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
