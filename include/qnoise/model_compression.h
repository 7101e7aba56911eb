#pragma once
// Between a task's model and its .qnz contents: which tensors are stored and in which scheme, and
// loading a compressed model back into the task's model (decoded, checked against it).
#include <map>
#include <set>
#include <string>
#include <vector>

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

// Decodes every stored tensor into `module`, but those named in `skip` (checked for presence and
// shape, left as they are: a runtime that computes those layers from their compressed form, see
// layer_kernel.h, need not hold them in float). `recomputed_buffers`: buffers the model rebuilds
// itself, not stored. Also enables the int8-activation layers the file calibrated and, when the
// file folded batch norms, resets their statistics to match. Throws qnoise::Error when a tensor
// the model needs is missing, the file has a tensor the model does not, a shape differs, or `skip`
// names a tensor the file does not store.
void load_compressed_tensors(torch::nn::Module& module, const CompressedModel& model,
                             const std::vector<std::string>& recomputed_buffers,
                             const std::set<std::string>& skip = {});

// load_compressed_tensors into the task's model, every stored tensor decoded.
void load_compressed_model(TrainingTask& task, const CompressedModel& model);

}  // namespace qnoise
