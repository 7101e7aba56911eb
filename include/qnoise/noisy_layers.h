#pragma once
// Quant-Noise on the Linear, Conv2d and Embedding layers of any torch::nn model, chosen by name,
// without changing the model's code. A layer's forward reads its public `weight` member, so for
// the duration of a NoiseScope that member holds a freshly drawn noisy copy of the registered
// parameter; when the scope ends it holds the parameter again. Gradients reach the parameter
// straight through, and optimizers, state dicts and checkpoints only ever see the parameter.
//
//   qnoise::NoisyLayers noisy(*model, {{"*fc*", 0.1, 8, qnoise::NoiseFunction::pq()}});
//   for (...) {
//     torch::Tensor loss;
//     { auto scope = noisy.draw(); loss = criterion(model->forward(x), y); }
//     loss.backward(); optimizer.step();
//   }
#include <torch/nn/module.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qnoise/block_layout.h"
#include "qnoise/quant_noise.h"
#include "qnoise/weight_scope.h"

namespace qnoise {

struct NoiseTarget {
  // Glob over module names as named_modules() gives them ("layers.0.ffn.fc1"): '*' matches any
  // run of characters (dots included), '?' one character.
  std::string pattern;
  double rate = 0.1;
  int64_t block_size = 8;
  NoiseFunction function = NoiseFunction::pq();
  // Activation noise (activation_quant.h): 2..8 quantizes the inputs of the target's Linear/Conv2d
  // layers to that many bits, each element with the same rate; 0: the inputs stay float.
  int activation_bits = 0;
};

// True when `name` matches the glob `pattern` as a whole.
bool glob_match(const std::string& pattern, const std::string& name);

// The public `weight` member of the layer kinds that can be quantized (Linear, Conv2d, Embedding);
// weight == nullptr for other modules.
struct WeightSlot {
  at::Tensor* weight = nullptr;
  LayerKind kind = LayerKind::Linear;
};
WeightSlot find_weight_slot(torch::nn::Module& module);

// The activation-noise rate of `layer` under the NoisyLayers scope active on this thread, or -1
// when no such scope noises that layer's inputs.
double activation_noise_rate(const torch::nn::Module& layer);

class NoisyLayers {
 public:
  struct Layer {
    std::string name;
    std::shared_ptr<torch::nn::Module> module;
    at::Tensor* weight_slot;  // the module's public `weight` member
    BlockLayout layout;
    size_t target;  // index into targets()
    at::Tensor workspace;  // the noisy weight's buffer, reused across steps
  };

  // Each Linear/Conv2d/Embedding submodule takes the first target whose pattern matches its name;
  // the Linear/Conv2d layers of targets with activation bits get their input_quant state (kept
  // when they have one). Throws qnoise::Error when a pattern matches no such layer (listing the
  // layers there are) or a block size does not divide a matched layer.
  NoisyLayers(torch::nn::Module& model, std::vector<NoiseTarget> targets);

  using Scope = WeightScope<NoisyLayers>;

  // Puts freshly drawn noisy weights on every chosen layer that is in training mode (layers in
  // eval mode keep their parameter), and noises their inputs where targets ask, until the returned
  // scope ends.
  [[nodiscard]] Scope draw();
  // The same with masks that are a function of `seed` alone (layer i's is mix_seed(seed, i)), not of
  // torch's generator: data-parallel ranks that pass the same seed draw the same masks.
  [[nodiscard]] Scope draw(uint64_t seed);

  const std::vector<Layer>& layers() const { return layers_; }
  const std::vector<NoiseTarget>& targets() const { return targets_; }

 private:
  friend class WeightScope<NoisyLayers>;
  void restore() const;
  Scope draw_masks(std::optional<uint64_t> seed);

  std::vector<NoiseTarget> targets_;
  std::vector<Layer> layers_;
  bool activation_noise_ = false;  // some layer's inputs are noised
};

}  // namespace qnoise
