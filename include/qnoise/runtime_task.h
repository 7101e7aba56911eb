#pragma once
// The built-in model families run from their compressed files (runtime_model.h's kernels on their
// layers): from the file alone (inference_model.h) or as the task the file was made for, with its
// data.
#include <memory>
#include <string>

#include "qnoise/inference_model.h"
#include "qnoise/runtime_model.h"
#include "qnoise/training_task.h"

namespace qnoise {

struct RuntimeTask {
  std::unique_ptr<TrainingTask> task;
  std::unique_ptr<RuntimeLayers> layers;
};

// A model from its file alone (inference_model.h) with kernels on every layer that has one.
struct RuntimeInferenceModel {
  InferenceModel model;
  std::unique_ptr<RuntimeLayers> layers;
};
RuntimeInferenceModel load_runtime_inference_model(const CompressedModel& file, const RuntimeOptions& options = {});

// The task of a compressed model (its data from the stored configuration, or `data` when given),
// with kernels on every layer that has one and the rest decoded; in eval mode. Throws
// qnoise::Error as load_compressed_task() does.
RuntimeTask load_runtime_task(const CompressedModel& model, const std::string& data = "",
                              const RuntimeOptions& options = {});

}  // namespace qnoise
