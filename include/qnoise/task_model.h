#pragma once
// The model a task configuration describes, built without the task's data: the sizes the data
// would give (vocabulary, number of classes) come from the task's artifacts, what TrainingTask::
// artifacts() stored beside the configuration in a checkpoint or .qnz file. The training tasks
// build their models with the same functions, so both give the same architecture.
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <vector>

#include "qnoise/image_dataset.h"
#include "qnoise/vocabulary.h"

namespace qnoise {

struct TaskModel {
  std::shared_ptr<torch::nn::Module> module;  // freshly initialised, in training mode
  // Buffers the model rebuilds from its configuration, which a file need not store
  // (TrainingTask::recomputed_buffers of the same task).
  std::vector<std::string> recomputed_buffers;
};

// `config` as stored (missing keys take their defaults, as make_training_task does); its "data"
// is not read. Throws qnoise::Error for an unknown task kind or missing or malformed artifacts.
TaskModel make_task_model(const nlohmann::json& config, const nlohmann::json& artifacts);

// The artifacts the tasks store (the inverse of their artifacts()). Each throws qnoise::Error
// naming the missing or malformed entry.
Vocabulary artifact_vocabulary(const nlohmann::json& artifacts);  // "vocabulary": lm, pairs
// "class_names" (image) or "label_names" (pairs): a non-empty array of strings.
std::vector<std::string> artifact_names(const nlohmann::json& artifacts, const std::string& key);
ImageNormalization artifact_normalization(const nlohmann::json& artifacts);  // "normalization": image

// Side of the square single-channel images the image task trains on (Fashion-MNIST's 28).
inline constexpr int64_t kImageTaskInputSize = 28;

}  // namespace qnoise
