#include "qnoise/compression_pipeline.h"

#include <filesystem>

#include "qnoise/activation_quant.h"
#include "qnoise/checkpoint.h"
#include "qnoise/error.h"
#include "qnoise/model_compression.h"

namespace qnoise {

namespace {

nlohmann::json with_data(nlohmann::json config, const std::string& data) {
  if (!data.empty()) config["data"] = data;
  return config;
}

// The rebuilt task must see the data the model was trained on: same vocabulary, same labels.
void check_artifacts(const TrainingTask& task, const nlohmann::json& stored, const std::string& source) {
  if (task.artifacts() == stored) return;
  std::string key = "?";
  const auto patch = nlohmann::json::diff(stored, task.artifacts());
  if (!patch.empty()) key = patch.front().value("path", "?");
  throw Error("the data in '" + task.config().value("data", std::string()) + "' does not match the model in '" + source +
              "' (its vocabulary, labels or normalization differ at " + key + "); pass the data it was trained on");
}

}  // namespace

std::unique_ptr<TrainingTask> load_trained_task(const std::string& checkpoint_path, const std::string& data) {
  nlohmann::json stored;
  try {
    stored = nlohmann::json::parse(read_checkpoint_metadata(checkpoint_path));
  } catch (const nlohmann::json::exception&) {
    throw Error("'" + checkpoint_path + "' has unreadable metadata: not a qnoise training checkpoint");
  } catch (const Error& e) {
    if (!std::filesystem::exists(checkpoint_path)) throw;
    throw Error("'" + checkpoint_path + "' is not a qnoise training checkpoint (" + e.what() + ")");
  }
  QNOISE_CHECK(stored.is_object() && stored.contains("task") && stored.contains("artifacts"), "'", checkpoint_path,
               "' is not a qnoise training checkpoint");
  auto task = make_training_task(with_data(stored.at("task"), data));
  check_artifacts(*task, stored.at("artifacts"), checkpoint_path);
  load_checkpoint(checkpoint_path, task->model(), nullptr);
  task->model().eval();
  return task;
}

std::unique_ptr<TrainingTask> load_compressed_task(const CompressedModel& model, const std::string& data) {
  auto task = make_training_task(with_data(model.task, data));
  check_artifacts(*task, model.artifacts, "the compressed model");
  load_compressed_model(*task, model);
  task->model().eval();
  return task;
}

CompressionOptions parse_compression_scheme(const std::string& name) {
  CompressionOptions options;
  if (name == "int8") {
    options.scheme = CompressionScheme::Int8;
  } else if (name == "int4") {
    options.scheme = CompressionScheme::Int4;
  } else if (name == "ipq" || name == "ipq+int8") {
    options.scheme = CompressionScheme::Ipq;
    options.int8_activations = name == "ipq+int8";
  } else {
    throw Error("unknown scheme '" + name + "' (int8, int4, ipq or ipq+int8)");
  }
  return options;
}

std::string to_string(CompressionScheme scheme) {
  switch (scheme) {
    case CompressionScheme::Int8: return "int8";
    case CompressionScheme::Int4: return "int4";
    case CompressionScheme::Ipq: return "ipq";
  }
  return "?";
}

CompressionResult compress_task_model(TrainingTask& task, const CompressionOptions& options) {
  CompressionResult result;
  std::map<std::string, CompressedWeight> compressed;
  nlohmann::json plan = {{"scheme", to_string(options.scheme)}};
  WeightScheme rest = options.rest;
  if (options.scheme == CompressionScheme::Ipq) {
    IpqOptions ipq = options.ipq;
    if (ipq.plan.stages.empty()) ipq.plan = parse_quantization_plan(task.default_ipq_plan());
    PqLayers pq;
    result.ipq = run_ipq(task, pq, ipq);
    compressed = pq_weights(pq);
    plan["ipq"] = to_json(ipq.plan);
    rest = ipq.plan.rest == "float32" ? WeightScheme::Float32 : WeightScheme::Float16;
  } else {
    compressed = quantize_layer_weights(task.model(), options.scheme == CompressionScheme::Int8 ? 8 : 4);
    task.recalibrate_normalization();  // batch-norm statistics of the quantized weights
  }
  if (options.int8_activations) {
    enable_input_quantization(task.model());
    task.run_calibration_passes();
    finish_input_calibration(task.model());
    plan["activations"] = "int8";
  }
  plan["rest"] = to_string(rest);
  result.model = make_compressed_model(task, compressed, rest, plan);
  load_compressed_model(task, result.model);  // float16 rounding of the rest, exactly as stored
  task.model().eval();
  return result;
}

}  // namespace qnoise
