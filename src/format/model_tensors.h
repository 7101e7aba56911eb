#pragma once
// Which of a module's tensors a .qnz file stores, and the batch-norm folding both its writer
// (compress) and its reader (runtime) apply.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace qnoise::detail {

// A batch-norm layer's epsilon, or nothing for other modules and norms without affine statistics.
std::optional<double> batch_norm_eps(const torch::nn::Module& module);

// Batch norm at inference is y = x * a + c per channel, a = weight / sqrt(running_var + eps) and
// c = bias - running_mean * a. The file keeps a and c as the layer's weight and bias and drops the
// statistics (two tensors fewer per layer, and no float16 rounding of the statistics); loading
// sets mean 0 and variance 1 - eps so that the same layer computes x * a + c again.
std::map<std::string, at::Tensor> fold_batch_norms(torch::nn::Module& model);

// With `reset`, sets every batch norm's statistics to mean 0 and variance 1 - eps. Returns their
// names ("<layer>.running_mean", "<layer>.running_var").
std::set<std::string> batch_norm_statistics(torch::nn::Module& model, bool reset);

// Parameters and buffers the file stores, by name, in the model's order: all but `skip`, the
// buffers the model recomputes and batch-norm step counters.
std::vector<std::pair<std::string, at::Tensor>> stored_tensors(torch::nn::Module& module,
                                                               const std::vector<std::string>& recomputed,
                                                               std::set<std::string> skip);

}  // namespace qnoise::detail
