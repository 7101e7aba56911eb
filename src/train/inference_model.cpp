#include "qnoise/inference_model.h"

#include "qnoise/efficientnet.h"
#include "qnoise/error.h"
#include "qnoise/model_loading.h"
#include "qnoise/task_model.h"
#include "qnoise/training_task.h"

namespace qnoise {

std::string InferenceModel::kind() const { return task.at("task").get<std::string>(); }

TransformerLmImpl& InferenceModel::language_model() const {
  auto* lm = dynamic_cast<TransformerLmImpl*>(module.get());
  QNOISE_CHECK(lm != nullptr, "this is a model of task '", kind(), "', not a language model (lm)");
  return *lm;
}

EncoderClassifierImpl& InferenceModel::pair_classifier() const {
  auto* classifier = dynamic_cast<EncoderClassifierImpl*>(module.get());
  QNOISE_CHECK(classifier != nullptr, "this is a model of task '", kind(), "', not a sentence-pair classifier (pairs)");
  return *classifier;
}

at::Tensor InferenceModel::image_logits(const at::Tensor& images) const {
  QNOISE_CHECK(kind() == "image", "this is a model of task '", kind(), "', not an image classifier (image)");
  return image_classifier_forward(*module, images);
}

InferenceModel build_inference_model(const CompressedModel& file) {
  QNOISE_CHECK(file.task.is_object() && file.task.contains("task") && file.task.at("task").is_string(),
               "the compressed model's metadata has no task kind (\"task\": image, lm or pairs)");
  InferenceModel model;
  model.task = complete_task_config(file.task);
  model.artifacts = file.artifacts;
  TaskModel built = make_task_model(model.task, model.artifacts);
  model.module = std::move(built.module);
  model.recomputed_buffers = std::move(built.recomputed_buffers);
  return model;
}

void load_compressed_tensors(InferenceModel& model, const CompressedModel& file, const std::set<std::string>& skip) {
  load_compressed_tensors(*model.module, file, model.recomputed_buffers, skip);
}

InferenceModel load_inference_model(const CompressedModel& file) {
  InferenceModel model = build_inference_model(file);
  load_compressed_tensors(model, file);
  model.module->eval();
  return model;
}

}  // namespace qnoise
