#include "qnoise/model_compression.h"

#include <ATen/ATen.h>

#include <set>

#include "format/model_tensors.h"
#include "qnoise/activation_quant.h"
#include "qnoise/error.h"
#include "qnoise/noisy_layers.h"

namespace qnoise {

std::map<std::string, CompressedWeight> pq_weights(const PqLayers& pq) {
  std::map<std::string, CompressedWeight> out;
  for (const auto& layer : pq.layers()) out.emplace(layer.name + ".weight", pq.compressed(layer));
  return out;
}

CompressedModel make_compressed_model(torch::nn::Module& module, const std::map<std::string, CompressedWeight>& compressed,
                                      const CompressedModelInfo& info) {
  const WeightScheme rest = info.rest;
  QNOISE_CHECK(rest == WeightScheme::Float16 || rest == WeightScheme::Float32,
               "tensors outside the plan are stored as float16 or float32");
  CompressedModel model;
  model.task = info.task;
  model.artifacts = info.artifacts;
  model.plan = info.plan;
  const std::map<std::string, at::Tensor> folded_norms = detail::fold_batch_norms(module);
  model.batch_norm_folded = !folded_norms.empty();
  std::set<std::string> used;
  for (const auto& [name, tensor] : detail::stored_tensors(module, info.recomputed_buffers,
                                                           detail::batch_norm_statistics(module, /*reset=*/false))) {
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

}  // namespace qnoise
