#include "format/model_tensors.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>

#include "qnoise/noisy_layers.h"  // glob_match

namespace qnoise::detail {

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


}  // namespace qnoise::detail
