// make_training_task: the one place that knows every task kind.
#include "qnoise/training_task.h"
#include "train/image_task.h"
#include "train/language_model_task.h"
#include "train/sentence_pair_task.h"
#include "train/task_config.h"

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

}  // namespace qnoise
