#include "qnoise/pq_layers.h"

#include <ATen/ATen.h>

#include "qnoise/error.h"
#include "qnoise/noisy_layers.h"
#include "qnoise/product_quantizer.h"

namespace qnoise {

namespace {

// The weight the file will hold: centroids rounded as stored, looked up by code.
at::Tensor decode_stored(const PqLayers::Layer& layer) {
  const at::Tensor centroids = round_centroids(layer.centroids.detach(), layer.centroid_bits);
  return layer.layout.from_blocks(centroids.index_select(0, layer.codes));
}

// The centroids the forward pass uses: float32 as trained, or, when the file keeps them in 8 or 4
// bits, their stored values with the gradient passed straight through.
at::Tensor trained_centroids(const PqLayers::Layer& layer) {
  if (layer.centroid_bits == 16) return layer.centroids;
  const at::Tensor rounded = round_centroids(layer.centroids.detach(), layer.centroid_bits);
  return layer.centroids + (rounded - layer.centroids.detach());
}

at::Tensor inverse_uses(const at::Tensor& codes, int64_t k) {
  return at::bincount(codes, /*weights=*/{}, k).clamp_min(1).to(at::kFloat).reciprocal().unsqueeze(1);
}

at::Tensor registered_weight(torch::nn::Module& module) {
  return module.named_parameters(/*recurse=*/false)["weight"];
}

}  // namespace

void PqLayers::add(torch::nn::Module& model, const std::string& name, const BlockLayout& layout,
                   const at::Tensor& codebook, const at::Tensor& codes, int centroid_bits) {
  check_centroid_bits(centroid_bits);
  QNOISE_CHECK(!contains(name), "layer '", name, "' is already product-quantized");
  std::shared_ptr<torch::nn::Module> module;
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    if (item.key() == name) module = item.value();
  QNOISE_CHECK(module, "the model has no layer '", name, "'");
  const WeightSlot slot = find_weight_slot(*module);
  QNOISE_CHECK(slot.weight != nullptr, "layer '", name, "' is not a Linear, Conv2d or Embedding layer");
  QNOISE_CHECK(slot.weight->sizes().vec() == layout.weight_shape(), "layer '", name, "': weight ",
               slot.weight->sizes(), " does not match the layout's ", shape_to_string(layout.weight_shape()));
  QNOISE_CHECK(codebook.dim() == 2 && codebook.size(1) == layout.block_size(), "layer '", name,
               "': codebook must be [K, ", layout.block_size(), "], got ", codebook.sizes());
  QNOISE_CHECK(codes.dim() == 1 && codes.numel() == layout.n_blocks(), "layer '", name, "': ", layout.n_blocks(),
               " codes expected, got ", codes.sizes());
  const at::Tensor wide_codes = (codes.to(at::kInt) & 0xFFFF).to(at::kLong);  // int16 holds uint16 codes
  const int64_t k = codebook.size(0);
  QNOISE_CHECK(wide_codes.numel() == 0 || wide_codes.max().item<int64_t>() < k, "layer '", name,
               "': a code is >= K = ", k);

  const at::Tensor weight = registered_weight(*module);
  Layer layer{name, module, slot.weight, layout, wide_codes.to(weight.device()),
              codebook.detach().to(weight.device(), at::kFloat).clone().set_requires_grad(true),
              at::empty({k, 1}, weight.options().dtype(at::kFloat)), centroid_bits};
  layer.inverse_uses.copy_(inverse_uses(layer.codes, k));
  // Mean instead of sum of the blocks' gradients: divide by how many blocks use each centroid.
  const at::Tensor scale = layer.inverse_uses;  // shares storage: refresh_uses() updates it
  layer.centroids.register_hook([scale](const at::Tensor& grad) { return grad * scale; });
  weight.set_requires_grad(false);
  layers_.push_back(std::move(layer));
  write_back();
}

PqLayers::Scope PqLayers::bind() {
  Scope scope(this);
  for (const Layer& layer : layers_)
    *layer.weight_slot = layer.layout.from_blocks(trained_centroids(layer).index_select(0, layer.codes));
  return scope;
}

void PqLayers::write_back() const {
  at::NoGradGuard no_grad;
  for (const Layer& layer : layers_) registered_weight(*layer.module).copy_(decode_stored(layer));
}

void PqLayers::restore() const {
  for (const Layer& layer : layers_) *layer.weight_slot = registered_weight(*layer.module);
}


void PqLayers::refresh_uses() {
  at::NoGradGuard no_grad;
  for (Layer& layer : layers_) layer.inverse_uses.copy_(inverse_uses(layer.codes, layer.centroids.size(0)));
}

bool PqLayers::contains(const std::string& name) const { return find(name) != nullptr; }

const PqLayers::Layer* PqLayers::find(const std::string& name) const {
  for (const Layer& layer : layers_)
    if (layer.name == name) return &layer;
  return nullptr;
}

std::vector<at::Tensor> PqLayers::centroid_parameters() const {
  std::vector<at::Tensor> out;
  for (const Layer& layer : layers_) out.push_back(layer.centroids);
  return out;
}

CompressedWeight PqLayers::compressed(const Layer& layer) const {
  const int64_t k = layer.centroids.size(0);
  const at::Tensor codes = layer.codes.to(at::kCPU).to(ProductQuantizer::index_dtype(k));
  return compress_pq(layer.layout, layer.centroids.detach().to(at::kCPU), codes, layer.centroid_bits);
}

}  // namespace qnoise
