#include "qnoise/ipq.h"

#include <ATen/ATen.h>
#include <torch/nn/utils/clip_grad.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <set>

#include "qnoise/checkpoint.h"
#include "qnoise/error.h"
#include "qnoise/json_input.h"
#include "qnoise/noisy_layers.h"
#include "qnoise/product_quantizer.h"
#include "qnoise/seeded_order.h"
#include "train/data_parallel_training.h"
#include "train/progress.h"

namespace qnoise {

namespace {

constexpr const char* kStageCheckpointFormat = "qnoise-ipq-stage-1";

BlockLayout layout_of(torch::nn::Module& model, const std::string& name, int64_t block_size) {
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    if (item.key() != name) continue;
    const WeightSlot slot = find_weight_slot(*item.value());
    QNOISE_CHECK(slot.weight != nullptr, "layer '", name, "' has no weight to quantize");
    return BlockLayout(slot.kind, slot.weight->sizes().vec(), block_size);
  }
  throw Error("the model has no layer '" + name + "'");
}

// A fresh optimizer over what is trainable now, carrying over the state (Adam's moments) of the
// parameters the previous one also had.
std::unique_ptr<torch::optim::Optimizer> rebuild_optimizer(torch::optim::Optimizer* previous,
                                                           const std::vector<at::Tensor>& parameters,
                                                           const OptimizerOptions& options) {
  auto optimizer = make_optimizer(parameters, options);
  if (previous == nullptr) return optimizer;
  for (const auto& p : parameters) {
    const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
    auto found = previous->state().find(key);
    if (found != previous->state().end()) optimizer->state()[key] = std::move(found->second);
  }
  return optimizer;
}

// The model, the PQ centroids and codes and the optimizer in one module tree for save/load.
std::shared_ptr<torch::nn::Module> stage_state(TrainingTask& task, const PqLayers& pq) {
  auto holder = std::make_shared<torch::nn::Module>();
  holder->register_module("model", task.model_ptr());
  auto codebooks = std::make_shared<torch::nn::Module>();
  for (size_t i = 0; i < pq.layers().size(); ++i) {
    codebooks->register_parameter("centroids" + std::to_string(i), pq.layers()[i].centroids);
    codebooks->register_buffer("codes" + std::to_string(i), pq.layers()[i].codes);
  }
  holder->register_module("pq", codebooks);
  return holder;
}

nlohmann::json stage_metadata(TrainingTask& task, const QuantizationPlan& plan, const PqLayers& pq,
                              int64_t stages_done, int64_t data_step) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& layer : pq.layers())
    layers.push_back({{"name", layer.name},
                      {"block_size", layer.layout.block_size()},
                      {"n_centroids", layer.centroids.size(0)},
                      {"centroid_bits", layer.centroid_bits}});
  return {{"format", kStageCheckpointFormat}, {"task", task.config()}, {"plan", to_json(plan)},
          {"stages_done", stages_done},       {"data_step", data_step}, {"layers", layers}};
}

struct Finetuning {
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  int64_t data_step = 0;  // batches drawn so far, over every stage
};

// Restores the PQ layers, model and optimizer of the last stage checkpoint; returns stages done.
int64_t resume_stages(TrainingTask& task, PqLayers& pq, const IpqOptions& options, Finetuning& finetuning) {
  const bool here = options.resume && !options.checkpoint_path.empty() && std::filesystem::exists(options.checkpoint_path);
  const bool resume = options.group != nullptr ? options.group->rank0_says(here) : here;
  if (!resume) return 0;
  QNOISE_CHECK(here, "rank ", options.group->rank(), " cannot find the iPQ checkpoint '", options.checkpoint_path,
               "' that rank 0 resumes from: --resume needs it on a file system every rank sees");
  nlohmann::json stored;
  try {
    stored = parse_json_input(read_checkpoint_metadata(options.checkpoint_path), "the metadata");
  } catch (const Error&) {
    throw Error("iPQ checkpoint '" + options.checkpoint_path + "' has unreadable metadata");
  }
  QNOISE_CHECK(stored.value("format", "") == kStageCheckpointFormat, "'", options.checkpoint_path,
               "' is not an iPQ stage checkpoint");
  QNOISE_CHECK(stored.at("task") == task.config() && stored.at("plan") == to_json(options.plan),
               "cannot resume from '", options.checkpoint_path, "': another model or quantization plan made it");
  torch::nn::Module& model = task.model();
  for (const auto& layer : stored.at("layers")) {
    const auto name = layer.at("name").get<std::string>();
    const BlockLayout layout = layout_of(model, name, json_integer(layer.at("block_size"), "block_size"));
    const auto k = json_integer(layer.at("n_centroids"), "n_centroids");
    // Placeholders of the stored shapes; loading overwrites them in place.
    pq.add(model, name, layout, at::zeros({k, layout.block_size()}), at::zeros({layout.n_blocks()}, at::kLong),
           static_cast<int>(json_integer(layer.value("centroid_bits", nlohmann::json(16)), "centroid_bits")));
  }
  const auto done = json_integer(stored.at("stages_done"), "stages_done");
  // The int8 / int4 layers of the stages done were frozen when they were quantized.
  const auto stage_layers = resolve_plan_layers(model, options.plan);
  const auto modules = model.named_modules("", /*include_self=*/false);
  for (size_t s = 0; s < static_cast<size_t>(done) && s < stage_layers.size(); ++s)
    if (options.plan.stages[s].scheme != StageScheme::Pq)
      for (const auto& name : stage_layers[s])
        modules[name]->named_parameters(/*recurse=*/false)["weight"].requires_grad_(false);
  if (options.plan.finetune_steps > 0)
    finetuning.optimizer = make_optimizer(trainable_parameters(model, pq), options.optimizer);
  auto holder = stage_state(task, pq);
  load_checkpoint(options.checkpoint_path, *holder, finetuning.optimizer.get());
  pq.refresh_uses();
  pq.write_back();
  finetuning.data_step = json_integer(stored.at("data_step"), "data_step");
  std::cerr << "resuming iPQ after stage " << done << " of " << options.plan.stages.size() << "\n";
  return done;
}

// The task's training loop for one stage's finetuning: plan.finetune_steps updates over the task's
// batches, continuing its data order across stages, with the optimizer's state carried over.
void finetune(TrainingTask& task, FinetuneStage& stage, const IpqOptions& options, Finetuning& finetuning) {
  const std::vector<at::Tensor> parameters = stage.parameters();
  finetuning.optimizer = rebuild_optimizer(finetuning.optimizer.get(), parameters, options.optimizer);
  set_learning_rate(*finetuning.optimizer, options.plan.lr);
  const int64_t per_epoch = task.batches_per_epoch();
  DataParallelGroup* group = options.group;
  const int64_t rank = group != nullptr ? group->rank() : 0;
  const int64_t world = group != nullptr ? group->world_size() : 1;
  std::unique_ptr<GradientAverager> averager;
  if (group != nullptr) averager = std::make_unique<GradientAverager>(*group, parameters, options.bucket_bytes);
  ProgressOptions display = options.progress;
  if (rank != 0) display.mode = ProgressOptions::Mode::Off;
  detail::ProgressDisplay progress(display, options.plan.finetune_steps, task.unit_name());
  for (int64_t i = 0; i < options.plan.finetune_steps; ++i) {
    const int64_t index = finetuning.data_step % per_epoch;
    if (i == 0 || index == 0) task.start_epoch(finetuning.data_step / per_epoch);
    finetuning.optimizer->zero_grad();
    if (world > 1) detail::seed_rank_generator(options.plan.seed, finetuning.data_step, rank);
    BatchLoss batch;
    {
      auto scope = stage.forward_scope(detail::noise_seed(options.plan.seed, finetuning.data_step, rank, false));
      batch = task.train_batch(index);
    }
    (group != nullptr ? batch.loss * (batch.share * static_cast<double>(world)) : batch.loss).backward();
    if (averager) averager->finish();
    if (options.clip_norm > 0) torch::nn::utils::clip_grad_norm_(parameters, options.clip_norm);
    finetuning.optimizer->step();
    ++finetuning.data_step;
    const double loss = batch.loss.item<double>();
    QNOISE_CHECK(std::isfinite(loss), "iPQ finetuning after stage '", stage.stage().name, "': the loss became ", loss);
    progress.update(i + 1, loss, batch.units, options.plan.lr);
  }
  progress.interrupt();
}

}  // namespace

ModuleCompressionOptions task_compression_options(TrainingTask& task, const QuantizationPlan& plan,
                                                  DataParallelGroup* group) {
  ModuleCompressionOptions options;
  options.plan = plan;
  options.recalibrate_normalization = [&task, group] {
    const int64_t batches = task.recalibrate_normalization();
    if (group != nullptr) detail::average_normalization_statistics(*group, task.model(), batches);
  };
  if (group != nullptr) {
    options.run_kmeans = group->rank() == 0;
    options.share_codebook = [group](at::Tensor& centroids, at::Tensor& codes) {
      std::vector<at::Tensor> tensors{centroids, codes};
      group->broadcast(tensors, 0);
    };
  }
  options.calibration_passes = [&task] { task.run_calibration_passes(); };
  options.file_info.task = task.config();
  options.file_info.artifacts = task.artifacts();
  options.file_info.recomputed_buffers = task.recomputed_buffers();
  return options;
}

IpqResult run_ipq(TrainingTask& task, PqLayers& pq, const IpqOptions& options, int activation_bits,
                  std::optional<InputRangeObserver> activation_ranges) {
  const QuantizationPlan& plan = options.plan;
  IpqOptions settings = options;
  settings.optimizer.lr = plan.lr;
  Finetuning finetuning;
  IpqResult result;
  DataParallelGroup* group = options.group;
  const bool writer = group == nullptr || group->rank() == 0;
  if (group != nullptr) {
    group->check_same_configuration({{"task", task.config()}, {"plan", to_json(plan)}}, "settings");
    task.set_data_shard({group->rank(), group->world_size()});
  }
  ModuleCompressionOptions compression = task_compression_options(task, plan, group);
  compression.activation_bits = activation_bits;
  compression.activation_ranges = activation_ranges;
  compression.first_stage = static_cast<size_t>(resume_stages(task, pq, settings, finetuning));
  compression.stop_after_stage = static_cast<size_t>(std::max<int64_t>(0, options.stop_after_stage));
  if (plan.finetune_steps > 0)
    compression.finetune = [&](FinetuneStage& stage) { finetune(task, stage, settings, finetuning); };
  compression.after_stage = [&](const ModuleCompressionOptions::StageDone& done) {
    const size_t s = done.index;
    const PqStage& stage = plan.stages[s];
    const PqLayers& layers = done.pq;
    result.layers = done.layers;
    result.metrics.clear();
    for (const auto& split : task.eval_splits())
      if (split == "valid") result.metrics[split] = task.evaluate(split);
    if (group != nullptr) result.metrics = detail::combine_shard_metrics(*group, result.metrics, task.unit_name());
    if (options.json_log != nullptr && writer) {
      nlohmann::json line = {{"event", "ipq_stage"}, {"stage", stage.name}};
      int64_t n_layers = 0;
      for (const auto& layer : result.layers) n_layers += layer.stage == stage.name;
      line["layers"] = n_layers;
      for (const auto& [split, values] : result.metrics)
        for (const auto& [metric, value] : values) line[split][metric] = value;
      *options.json_log << line.dump() << std::endl;
    }
    if (!options.checkpoint_path.empty() && writer) {
      auto holder = stage_state(task, layers);
      save_checkpoint(options.checkpoint_path, *holder, finetuning.optimizer.get(),
                      {static_cast<int64_t>(s + 1), 0,
                       stage_metadata(task, plan, layers, static_cast<int64_t>(s + 1), finetuning.data_step).dump(), {}});
    }
  };
  // The per-layer reports as each stage's layers are quantized, so that after_stage sees them.
  ModuleCompression compressed = compress_module(task.model(), compression, &pq);
  result.layers = std::move(compressed.layers);
  result.kmeans_seconds = compressed.kmeans_seconds;
  result.stopped_early = compressed.stopped_early;
  result.model = std::move(compressed.model);
  return result;
}

}  // namespace qnoise
