// Reading the artifacts the tasks write (artifacts() of each task): the vocabulary as text, class
// or label names, image normalization.
#include "qnoise/error.h"
#include "qnoise/json_input.h"
#include "qnoise/task_model.h"

namespace qnoise {

namespace {

const nlohmann::json& artifact(const nlohmann::json& artifacts, const std::string& key) {
  QNOISE_CHECK(artifacts.is_object() && artifacts.contains(key), "the model's artifacts have no '", key,
               "' (a file written by another program, or by a qnoise without it?)");
  return artifacts.at(key);
}

}  // namespace

Vocabulary artifact_vocabulary(const nlohmann::json& artifacts) {
  const auto& text = artifact(artifacts, "vocabulary");
  QNOISE_CHECK(text.is_string(), "the model's artifact 'vocabulary' is not text");
  return Vocabulary::from_text(text.get<std::string>(), "the model's vocabulary");
}

std::vector<std::string> artifact_names(const nlohmann::json& artifacts, const std::string& key) {
  const auto& names = artifact(artifacts, key);
  QNOISE_CHECK(names.is_array() && !names.empty(), "the model's artifact '", key, "' is not a list of names");
  std::vector<std::string> out;
  for (const auto& name : names) {
    QNOISE_CHECK(name.is_string(), "the model's artifact '", key, "' holds ", quote_json(name), ", not a name");
    out.push_back(name.get<std::string>());
  }
  return out;
}

ImageNormalization artifact_normalization(const nlohmann::json& artifacts) {
  const auto& stats = artifact(artifacts, "normalization");
  QNOISE_CHECK(stats.is_object() && stats.contains("mean") && stats.contains("std") && stats.at("mean").is_number() &&
                   stats.at("std").is_number(),
               "the model's artifact 'normalization' needs numbers 'mean' and 'std', got ", stats.dump());
  ImageNormalization normalization;
  normalization.mean = stats.at("mean").get<double>();
  normalization.std = stats.at("std").get<double>();
  QNOISE_CHECK(normalization.std > 0, "the model's normalization std must be positive, got ", normalization.std);
  return normalization;
}

}  // namespace qnoise
