#include "qnoise/model_compression.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>

#include <optional>
#include <set>

#include "qnoise/activation_quant.h"
#include "qnoise/error.h"
#include "qnoise/layer_factory.h"
#include "qnoise/noisy_layers.h"

namespace qnoise {

namespace {

// A batch-norm layer's epsilon, or nothing for other modules and norms without affine statistics.
std::optional<double> batch_norm_eps(const torch::nn::Module& module) {
  if (const auto* bn = dynamic_cast<const torch::nn::BatchNorm1dImpl*>(&module))
    if (bn->options.affine() && bn->options.track_running_stats()) return bn->options.eps();
  if (const auto* bn = dynamic_cast<const torch::nn::BatchNorm2dImpl*>(&module))
    if (bn->options.affine() && bn->options.track_running_stats()) return bn->options.eps();
  return std::nullopt;
}

// Batch norm at inference is y = x * a + c per channel, a = weight / sqrt(running_var + eps) and
// c = bias - running_mean * a. The file keeps a and c as the layer's weight and bias and drops the
// statistics (two tensors fewer per layer, and no float16 rounding of the statistics); loading
// sets mean 0 and variance 1 - eps so that the same layer computes x * a + c again.
std::map<std::string, at::Tensor> fold_batch_norms(torch::nn::Module& model) {
  std::map<std::string, at::Tensor> folded;  // "<layer>.weight" / "<layer>.bias": a and c
  at::NoGradGuard no_grad;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    const std::optional<double> eps = batch_norm_eps(*item.value());
    if (!eps) continue;
    auto params = item.value()->named_parameters(/*recurse=*/false);
    auto buffers = item.value()->named_buffers(/*recurse=*/false);
    const at::Tensor a = params["weight"] / (buffers["running_var"] + *eps).sqrt();
    folded[item.key() + ".weight"] = a;
    folded[item.key() + ".bias"] = params["bias"] - buffers["running_mean"] * a;
  }
  return folded;
}

// With `reset`, sets every batch norm's statistics to mean 0 and variance 1 - eps. Returns their
// names ("<layer>.running_mean", "<layer>.running_var").
std::set<std::string> batch_norm_statistics(torch::nn::Module& model, bool reset) {
  std::set<std::string> names;
  at::NoGradGuard no_grad;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    const std::optional<double> eps = batch_norm_eps(*item.value());
    if (!eps) continue;
    names.insert(item.key() + ".running_mean");
    names.insert(item.key() + ".running_var");
    if (!reset) continue;
    auto buffers = item.value()->named_buffers(/*recurse=*/false);
    buffers["running_mean"].zero_();
    buffers["running_var"].fill_(1.0 - *eps);
  }
  return names;
}

// Parameters and buffers the file stores, by name, in the model's order: all but `skip`, the
// buffers the model recomputes and batch-norm step counters.
std::vector<std::pair<std::string, at::Tensor>> stored_tensors(torch::nn::Module& module,
                                                               const std::vector<std::string>& recomputed,
                                                               std::set<std::string> skip) {
  skip.insert(recomputed.begin(), recomputed.end());
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : module.named_parameters()) out.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers()) {
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
  const std::map<std::string, at::Tensor> folded_norms = fold_batch_norms(task.model());
  model.batch_norm_folded = !folded_norms.empty();
  std::set<std::string> used;
  for (const auto& [name, tensor] : stored_tensors(task.model(), task.recomputed_buffers(),
                                                   batch_norm_statistics(task.model(), /*reset=*/false))) {
    const auto found = compressed.find(name);
    const auto folded = folded_norms.find(name);
    if (found != compressed.end()) {
      QNOISE_CHECK(found->second.shape == tensor.sizes().vec(), "compressed '", name, "' has shape ",
                   shape_to_string(found->second.shape), " but the model's is ", shape_to_string(tensor.sizes().vec()));
      model.tensors.emplace_back(name, found->second);
      used.insert(name);
    } else if (folded != folded_norms.end()) {
      model.tensors.emplace_back(name, compress_float(folded->second.detach().to(at::kCPU, at::kFloat), rest));
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

void load_compressed_tensors(torch::nn::Module& module, const CompressedModel& model,
                             const std::vector<std::string>& recomputed_buffers, const std::set<std::string>& skip) {
  const std::string kind = model.task.is_object() ? model.task.value("task", std::string("?")) : "?";
  // Layers with int8 activations get their range buffer first, so the file's values can load.
  std::vector<std::string> activation_layers;
  const std::string suffix = std::string(".") + kInputQuantBuffer;
  for (const auto& [name, weight] : model.tensors)
    if (glob_match("*" + suffix, name)) activation_layers.push_back(name.substr(0, name.size() - suffix.size()));
  if (!activation_layers.empty()) enable_input_quantization(module, activation_layers);
  std::set<std::string> expected;
  at::NoGradGuard no_grad;
  const std::set<std::string> statistics =
      model.batch_norm_folded ? batch_norm_statistics(module, /*reset=*/true) : std::set<std::string>{};
  for (const auto& [name, tensor] : stored_tensors(module, recomputed_buffers, statistics)) {
    expected.insert(name);
    const CompressedWeight* stored = model.find(name);
    QNOISE_CHECK(stored != nullptr, "the compressed model has no tensor '", name, "' (", kind,
                 " model of this configuration)");
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

void load_compressed_model(TrainingTask& task, const CompressedModel& model) {
  load_compressed_tensors(task.model(), model, task.recomputed_buffers());
}

}  // namespace qnoise
