#include "qnoise/model_compression.h"

#include <ATen/ATen.h>

#include <set>

#include "qnoise/activation_quant.h"
#include "qnoise/error.h"
#include "qnoise/noisy_layers.h"

namespace qnoise {

namespace {

// Parameters and buffers the file stores, by name, in the model's order.
std::vector<std::pair<std::string, at::Tensor>> stored_tensors(TrainingTask& task) {
  const auto recomputed = task.recomputed_buffers();
  const std::set<std::string> skip(recomputed.begin(), recomputed.end());
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : task.model().named_parameters()) out.emplace_back(item.key(), item.value());
  for (const auto& item : task.model().named_buffers()) {
    if (skip.count(item.key()) != 0 || glob_match("*num_batches_tracked", item.key())) continue;
    out.emplace_back(item.key(), item.value());
  }
  return out;
}

}  // namespace

std::map<std::string, CompressedWeight> quantize_layer_weights(torch::nn::Module& model, int bits) {
  QNOISE_CHECK(bits == 8 || bits == 4, "scalar quantization needs 8 or 4 bits, got ", bits);
  std::map<std::string, CompressedWeight> out;
  at::NoGradGuard no_grad;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    if (find_weight_slot(*item.value()).weight == nullptr) continue;
    at::Tensor weight = item.value()->named_parameters(/*recurse=*/false)["weight"];
    CompressedWeight stored = compress_scalar(weight.detach().to(at::kCPU, at::kFloat), bits);
    weight.copy_(stored.decode());
    out.emplace(item.key() + ".weight", std::move(stored));
  }
  return out;
}

std::map<std::string, CompressedWeight> pq_weights(const PqLayers& pq) {
  std::map<std::string, CompressedWeight> out;
  for (const auto& layer : pq.layers()) out.emplace(layer.name + ".weight", pq.compressed(layer));
  return out;
}

CompressedModel make_compressed_model(TrainingTask& task, const std::map<std::string, CompressedWeight>& compressed,
                                      WeightScheme rest, const nlohmann::json& plan) {
  QNOISE_CHECK(rest == WeightScheme::Float16 || rest == WeightScheme::Float32,
               "tensors outside the plan are stored as float16 or float32");
  CompressedModel model;
  model.task = task.config();
  model.artifacts = task.artifacts();
  model.plan = plan;
  std::set<std::string> used;
  for (const auto& [name, tensor] : stored_tensors(task)) {
    const auto found = compressed.find(name);
    if (found != compressed.end()) {
      QNOISE_CHECK(found->second.shape == tensor.sizes().vec(), "compressed '", name, "' has shape ",
                   shape_to_string(found->second.shape), " but the model's is ", shape_to_string(tensor.sizes().vec()));
      model.tensors.emplace_back(name, found->second);
      used.insert(name);
    } else {
      // Activation ranges stay float32: a float16 scale would move every quantization level.
      const bool exact = glob_match(std::string("*.") + kInputQuantBuffer, name);
      model.tensors.emplace_back(name, compress_float(tensor.detach().to(at::kCPU, at::kFloat),
                                                      exact ? WeightScheme::Float32 : rest));
    }
  }
  for (const auto& [name, weight] : compressed)
    QNOISE_CHECK(used.count(name) != 0, "the model has no tensor '", name, "' to store compressed");
  return model;
}

void load_compressed_model(TrainingTask& task, const CompressedModel& model) {
  // Layers with int8 activations get their range buffer first, so the file's values can load.
  std::vector<std::string> activation_layers;
  const std::string suffix = std::string(".") + kInputQuantBuffer;
  for (const auto& [name, weight] : model.tensors)
    if (glob_match("*" + suffix, name)) activation_layers.push_back(name.substr(0, name.size() - suffix.size()));
  if (!activation_layers.empty()) enable_input_quantization(task.model(), activation_layers);
  std::set<std::string> expected;
  at::NoGradGuard no_grad;
  for (const auto& [name, tensor] : stored_tensors(task)) {
    expected.insert(name);
    const CompressedWeight* stored = model.find(name);
    QNOISE_CHECK(stored != nullptr, "the compressed model has no tensor '", name, "' (", task.kind(),
                 " model of this configuration)");
    QNOISE_CHECK(stored->shape == tensor.sizes().vec(), "tensor '", name, "' has shape ",
                 shape_to_string(stored->shape), " but the model expects ", shape_to_string(tensor.sizes().vec()));
    tensor.copy_(stored->decode().to(tensor.dtype()));
  }
  for (const auto& [name, weight] : model.tensors)
    QNOISE_CHECK(expected.count(name) != 0, "the compressed model has a tensor '", name,
                 "' that this model does not (another architecture or configuration?)");
}

}  // namespace qnoise
