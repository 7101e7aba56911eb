#include "qnoise/model_loading.h"

#include <ATen/ATen.h>

#include <map>

#include "format/model_tensors.h"
#include "qnoise/activation_quant.h"
#include "qnoise/error.h"
#include "qnoise/layer_factory.h"
#include "qnoise/noisy_layers.h"

namespace qnoise {

void load_compressed_tensors(torch::nn::Module& module, const CompressedModel& model,
                             const std::vector<std::string>& recomputed_buffers, const std::set<std::string>& skip) {
  // The built-in families' files name their kind; a module of the caller's own has none.
  const std::string kind = model.task.is_object() && model.task.contains("task") && model.task.at("task").is_string()
                               ? " (" + model.task.at("task").get<std::string>() + " model of this configuration)"
                               : "";
  // Layers with quantized activations get their range buffer first (for their bits), so the file's
  // values can load.
  std::map<int, std::vector<std::string>> activation_layers;  // by bits
  const std::string suffix = std::string(".") + kInputQuantBuffer;
  for (const auto& [name, weight] : model.tensors) {
    if (!glob_match("*" + suffix, name)) continue;
    const at::Tensor state = weight.decode();
    check_calibrated_input_quant(state, "tensor '" + name + "'");
    activation_layers[input_quant_bits(state)].push_back(name.substr(0, name.size() - suffix.size()));
  }
  for (const auto& [bits, layers] : activation_layers) enable_input_quantization(module, layers, bits);
  std::set<std::string> expected;
  at::NoGradGuard no_grad;
  const std::set<std::string> statistics =
      model.batch_norm_folded ? detail::batch_norm_statistics(module, /*reset=*/true) : std::set<std::string>{};
  for (const auto& [name, tensor] : detail::stored_tensors(module, recomputed_buffers, statistics)) {
    expected.insert(name);
    const CompressedWeight* stored = model.find(name);
    QNOISE_CHECK(stored != nullptr, "the compressed model has no tensor '", name, "'", kind);
    QNOISE_CHECK(stored->shape == tensor.sizes().vec(), "tensor '", name, "' has shape ",
                 shape_to_string(stored->shape), " but the model expects ", shape_to_string(tensor.sizes().vec()));
    if (skip.count(name) != 0) continue;
    at::Tensor value = stored->decode().to(tensor.dtype());
    // A weightless architecture's placeholder (layer_factory.h) takes the value as its own storage.
    if (is_weight_placeholder(tensor)) tensor.set_data(value); else tensor.copy_(value);
  }
  for (const auto& [name, weight] : model.tensors)
    QNOISE_CHECK(expected.count(name) != 0, "the compressed model has a tensor '", name,
                 "' that this model does not (another architecture or configuration?)");
  for (const auto& name : skip)
    QNOISE_CHECK(expected.count(name) != 0, "cannot skip '", name, "': the model stores no such tensor");
}

}  // namespace qnoise
