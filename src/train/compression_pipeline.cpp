#include "qnoise/compression_pipeline.h"

#include "qnoise/checkpoint.h"
#include "qnoise/error.h"
#include "qnoise/model_loading.h"
#include "qnoise/module_compression.h"
#include "qnoise/noisy_layers.h"
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
  // A model trained with activation noise keeps its input ranges: the noise targets give the
  // layers their input_quant buffers, so that the checkpoint's values load into them.
  if (stored.contains("noise")) {
    const QuantNoiseOptions noise = quant_noise_options_from_json(stored.at("noise"));
    if (noise.activation_bits > 0) NoisyLayers(task->model(), quant_noise_targets(*task, noise));
  }
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
    options.activation_bits = name == "ipq+int8" ? 8 : 0;
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

void load_compressed_model(TrainingTask& task, const CompressedModel& model) {
  load_compressed_tensors(task.model(), model, task.recomputed_buffers());
}

CompressionResult compress_task_model(TrainingTask& task, const CompressionOptions& options) {
  CompressionResult result;
  if (options.scheme == CompressionScheme::Ipq) {
    QNOISE_CHECK(!options.ipq.plan.stages.empty(),
                 "iPQ needs a plan (default_compression_options gives the model family's)");
    PqLayers pq;
    result.ipq = run_ipq(task, pq, options.ipq, options.activation_bits, options.activation_ranges);
    result.model = std::move(result.ipq.model);
    return result;
  }
  // int8 / int4: every layer in one stage, without finetuning.
  QuantizationPlan plan;
  PqStage stage;
  stage.name = to_string(options.scheme);
  stage.layers = {"*"};
  stage.scheme = options.scheme == CompressionScheme::Int8 ? StageScheme::Int8 : StageScheme::Int4;
  stage.per_tensor = options.per_tensor;
  plan.stages = {stage};
  plan.rest = to_string(options.rest);
  ModuleCompressionOptions compression = task_compression_options(task, plan);
  compression.activation_bits = options.activation_bits;
  compression.activation_ranges = options.activation_ranges;
  compression.file_info.plan = {{"scheme", to_string(options.scheme)}};
  ModuleCompression compressed = compress_module(task.model(), compression);
  result.ipq.layers = std::move(compressed.layers);
  result.model = std::move(compressed.model);
  return result;
}

}  // namespace qnoise
