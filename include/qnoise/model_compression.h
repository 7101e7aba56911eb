#pragma once
// Between a module and its .qnz contents: every tensor of the module gathered into a
// CompressedModel, the quantized layers' weights as given (module_compression.h makes them).
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <map>
#include <string>
#include <vector>

#include "qnoise/compressed_weight.h"
#include "qnoise/pq_layers.h"
#include "qnoise/qnz_file.h"

namespace qnoise {

// The stored weights of the PQ layers, by parameter name.
std::map<std::string, CompressedWeight> pq_weights(const PqLayers& pq);

// What a .qnz file says about its model beside the tensors.
struct CompressedModelInfo {
  WeightScheme rest = WeightScheme::Float16;  // tensors outside `compressed`: Float16 or Float32
  nlohmann::json plan = nlohmann::json::object();  // how it was compressed
  // The architecture, for loaders that rebuild it (the built-in families' task configuration and
  // artifacts); null for a module the caller builds itself.
  nlohmann::json task;
  nlohmann::json artifacts;
  std::vector<std::string> recomputed_buffers;  // rebuilt by the module itself: not stored
};

// Every parameter and buffer of `module`: those in `compressed` as given, the rest in info.rest.
// Left out: info.recomputed_buffers and batch-norm step counters, which inference never reads;
// batch norms are folded (model_tensors.h). Throws qnoise::Error when `compressed` names a tensor
// the module lacks or gives it another shape.
CompressedModel make_compressed_model(torch::nn::Module& module, const std::map<std::string, CompressedWeight>& compressed,
                                      const CompressedModelInfo& info);

}  // namespace qnoise
