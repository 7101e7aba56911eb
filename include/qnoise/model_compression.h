#pragma once
// Between a task's model and its .qnz contents: which tensors are stored and in which scheme, and
// loading a compressed model back into the task's model (decoded, checked against it).
#include <map>
#include <set>
#include <string>

#include "qnoise/compressed_weight.h"
#include "qnoise/pq_layers.h"
#include "qnoise/qnz_file.h"
#include "qnoise/training_task.h"

namespace qnoise {

// Per-output-channel int8 / int4 (bits) of the weight of every Linear, Conv2d and Embedding layer;
// each layer's parameter then holds the decoded weight. Returns the stored weights by parameter
// name ("decoder.layers.0.fc1.weight").
std::map<std::string, CompressedWeight> quantize_layer_weights(torch::nn::Module& model, int bits);

// The stored weights of the PQ layers, by parameter name.
std::map<std::string, CompressedWeight> pq_weights(const PqLayers& pq);

// Every parameter and buffer of the task's model: those in `compressed` as given, the rest in
// `rest` (Float16 or Float32). Left out: buffers the model rebuilds itself (TrainingTask::
// recomputed_buffers) and batch-norm step counters, which inference never reads.
CompressedModel make_compressed_model(TrainingTask& task, const std::map<std::string, CompressedWeight>& compressed,
                                      WeightScheme rest, const nlohmann::json& plan);

// Decodes every stored tensor into the task's model, except those named in `kept_compressed`
// (weights a runtime kernel computes from their stored form, runtime_model.h). Throws
// qnoise::Error when a tensor the model needs is missing, the file has a tensor the model does
// not, or a shape differs.
void load_compressed_model(TrainingTask& task, const CompressedModel& model,
                           const std::set<std::string>& kept_compressed = {});

}  // namespace qnoise
