#include "qnoise/noisy_layers.h"

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <map>
#include <string>
#include <vector>

#include "qnoise/activation_quant.h"
#include "qnoise/error.h"
#include "qnoise/seeded_order.h"

namespace qnoise {

bool glob_match(const std::string& pattern, const std::string& name) {
  // Iterative wildcard matching with backtracking to the last '*'.
  size_t p = 0, n = 0, star = std::string::npos, resume = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p, ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++, resume = n;
    } else if (star != std::string::npos) {
      p = star + 1, n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

WeightSlot find_weight_slot(torch::nn::Module& module) {
  if (auto* linear = module.as<torch::nn::Linear>()) return {&linear->weight, LayerKind::Linear};
  if (auto* conv = module.as<torch::nn::Conv2d>()) return {&conv->weight, LayerKind::Conv2d};
  if (auto* embedding = module.as<torch::nn::Embedding>())
    return {&embedding->weight, LayerKind::Embedding};
  return {};
}

namespace {

// The NoisyLayers whose scope is active on this thread with activation noise (one at a time).
thread_local const NoisyLayers* activation_noise_scope = nullptr;

}  // namespace

double activation_noise_rate(const torch::nn::Module& layer) {
  if (activation_noise_scope == nullptr) return -1;
  for (const NoisyLayers::Layer& noisy : activation_noise_scope->layers()) {
    if (noisy.module.get() != &layer) continue;
    const NoiseTarget& target = activation_noise_scope->targets()[noisy.target];
    return target.activation_bits > 0 && noisy.layout.kind() != LayerKind::Embedding ? target.rate : -1;
  }
  return -1;
}

NoisyLayers::NoisyLayers(torch::nn::Module& model, std::vector<NoiseTarget> targets)
    : targets_(std::move(targets)) {
  std::vector<bool> matched(targets_.size(), false);
  std::string candidates;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    WeightSlot slot = find_weight_slot(*item.value());
    if (slot.weight == nullptr) continue;
    candidates += (candidates.empty() ? "" : ", ") + item.key();
    for (size_t t = 0; t < targets_.size(); ++t) {
      if (!glob_match(targets_[t].pattern, item.key())) continue;
      matched[t] = true;
      try {
        layers_.push_back({item.key(), item.value(), slot.weight,
                           BlockLayout(slot.kind, slot.weight->sizes().vec(), targets_[t].block_size), t,
                           at::Tensor()});
      } catch (const Error& e) {
        throw Error("layer '" + item.key() + "': " + e.what());
      }
      break;
    }
  }
  for (size_t t = 0; t < targets_.size(); ++t)
    QNOISE_CHECK(matched[t], "Quant-Noise pattern '", targets_[t].pattern,
                 "' matches no Linear, Conv2d or Embedding layer; the model has: ",
                 candidates.empty() ? std::string("none") : candidates);
  std::map<int, std::vector<std::string>> noised_inputs;  // layer names by activation bits
  for (const Layer& layer : layers_) {
    const int bits = targets_[layer.target].activation_bits;
    if (bits > 0 && layer.layout.kind() != LayerKind::Embedding) noised_inputs[bits].push_back(layer.name);
  }
  for (const auto& [bits, names] : noised_inputs) enable_input_quantization(model, names, bits);
  activation_noise_ = !noised_inputs.empty();
}

NoisyLayers::Scope NoisyLayers::draw() { return draw_masks(std::nullopt); }

NoisyLayers::Scope NoisyLayers::draw(uint64_t seed) { return draw_masks(seed); }

NoisyLayers::Scope NoisyLayers::draw_masks(std::optional<uint64_t> seed) {
  Scope scope(this);
  if (activation_noise_) activation_noise_scope = this;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = layers_[i];
    if (!layer.module->is_training()) continue;
    const NoiseTarget& target = targets_[layer.target];
    // Read the registered parameter each time: loading or moving the model may have replaced it.
    at::Tensor parameter = layer.module->named_parameters(/*recurse=*/false)["weight"];
    if (!seed || target.rate == 0.0)
      *layer.weight_slot = quant_noise(parameter, layer.layout, target.rate, target.function,
                                       /*training=*/true, &layer.workspace);
    else
      *layer.weight_slot = quant_noise_with_seed(parameter, layer.layout, target.rate, target.function,
                                                 mix_seed(*seed, i), &layer.workspace);
  }
  return scope;
}

void NoisyLayers::restore() const {
  if (activation_noise_scope == this) activation_noise_scope = nullptr;
  for (const Layer& layer : layers_)
    *layer.weight_slot = layer.module->named_parameters(/*recurse=*/false)["weight"];
}


}  // namespace qnoise
