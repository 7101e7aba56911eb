#include "qnoise/compression_pipeline.h"

#include "qnoise/activation_quant.h"
#include "qnoise/checkpoint.h"
#include "qnoise/error.h"
#include "qnoise/model_compression.h"
#include "qnoise/trainer.h"

namespace qnoise {

namespace {

nlohmann::json with_data(nlohmann::json config, const std::string& data) {
  if (!data.empty()) config["data"] = data;
  return config;
}

}  // namespace

std::unique_ptr<TrainingTask> load_trained_task(const std::string& checkpoint_path, const std::string& data) {
  const nlohmann::json stored = read_training_checkpoint_metadata(checkpoint_path);
  auto task = make_training_task(with_data(stored.at("task"), data));
  check_same_artifacts(*task, stored.at("artifacts"), checkpoint_path);
  load_checkpoint(checkpoint_path, task->model(), nullptr);
  task->model().eval();
  return task;
}

std::unique_ptr<TrainingTask> make_compressed_task(const CompressedModel& model, const std::string& data) {
  auto task = make_training_task(with_data(model.task, data));
  check_same_artifacts(*task, model.artifacts, "the compressed model");
  return task;
}

std::unique_ptr<TrainingTask> load_compressed_task(const CompressedModel& model, const std::string& data) {
  auto task = make_compressed_task(model, data);
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

CompressionOptions default_compression_options(const TrainingTask& task, const std::string& name) {
  CompressionOptions options = parse_compression_scheme(name);
  options.ipq.plan = parse_quantization_plan(task.default_ipq_plan());
  const TrainerOptions training = default_trainer_options(task.kind());
  options.ipq.optimizer = training.optimizer;
  options.ipq.clip_norm = training.clip_norm;
  return options;
}

CompressionResult compress_task_model(TrainingTask& task, const CompressionOptions& options) {
  CompressionResult result;
  std::map<std::string, CompressedWeight> compressed;
  nlohmann::json plan = {{"scheme", to_string(options.scheme)}};
  WeightScheme rest = options.rest;
  if (options.scheme == CompressionScheme::Ipq) {
    IpqOptions ipq = options.ipq;
    QNOISE_CHECK(!ipq.plan.stages.empty(), "iPQ needs a plan (default_compression_options gives the model family's)");
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
