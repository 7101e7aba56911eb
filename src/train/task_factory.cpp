// make_training_task: the one place that knows every task kind.
#include "qnoise/task_model.h"
#include "qnoise/training_task.h"
#include "train/image_task.h"
#include "train/language_model_task.h"
#include "train/sentence_pair_task.h"
#include "train/task_config.h"
#include "train/task_models.h"

namespace qnoise {

namespace {

nlohmann::json defaults_for(const nlohmann::json& config) {
  QNOISE_CHECK(config.is_object() && config.contains("task"),
               "task configuration needs a \"task\" key (image, lm or pairs), got ", config.dump());
  const auto kind = detail::config_value<std::string>(config, "task");
  if (kind == "image") return detail::ImageTask::defaults();
  if (kind == "lm") return detail::LanguageModelTask::defaults();
  if (kind == "pairs") return detail::SentencePairTask::defaults();
  throw Error("unknown task '" + kind + "' (image, lm or pairs)");
}

}  // namespace

nlohmann::json complete_task_config(const nlohmann::json& config) {
  const auto defaults = defaults_for(config);
  return detail::merge_config(defaults, config, defaults.at("task").get<std::string>() + " task");
}

std::unique_ptr<TrainingTask> make_training_task(const nlohmann::json& config) {
  const auto complete = complete_task_config(config);
  const auto kind = complete.at("task").get<std::string>();
  if (kind == "image") return std::make_unique<detail::ImageTask>(complete);
  if (kind == "lm") return std::make_unique<detail::LanguageModelTask>(complete);
  return std::make_unique<detail::SentencePairTask>(complete);
}

TaskModel make_task_model(const nlohmann::json& config, const nlohmann::json& artifacts) {
  const auto complete = complete_task_config(config);
  const auto kind = complete.at("task").get<std::string>();
  if (kind == "image") {
    const auto classes = static_cast<int64_t>(artifact_names(artifacts, "class_names").size());
    artifact_normalization(artifacts);  // checked here: a model without it cannot be used
    return {detail::make_image_model(complete, classes), {}};
  }
  const Vocabulary vocabulary = artifact_vocabulary(artifacts);
  if (kind == "lm")
    return {detail::make_language_model(complete, vocabulary.size()).ptr(),
            detail::language_model_recomputed_buffers()};
  const auto labels = static_cast<int64_t>(artifact_names(artifacts, "label_names").size());
  detail::pair_encoding(complete, vocabulary);  // checks the vocabulary has the pairs' <s>
  return {detail::make_pair_classifier(complete, vocabulary.size(), labels).ptr(), {}};
}

}  // namespace qnoise
