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
#include "qnoise/noisy_layers.h"
#include "qnoise/product_quantizer.h"
#include "qnoise/seeded_order.h"
#include "train/progress.h"

namespace qnoise {

namespace {

constexpr const char* kStageCheckpointFormat = "qnoise-ipq-stage-1";

std::shared_ptr<torch::nn::Module> find_module(torch::nn::Module& model, const std::string& name) {
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    if (item.key() == name) return item.value();
  throw Error("the model has no layer '" + name + "'");
}

at::Tensor registered_weight(torch::nn::Module& model, const std::string& name) {
  return find_module(model, name)->named_parameters(/*recurse=*/false)["weight"];
}

BlockLayout layout_of(torch::nn::Module& model, const std::string& name, int64_t block_size) {
  const WeightSlot slot = find_weight_slot(*find_module(model, name));
  return BlockLayout(slot.kind, slot.weight->sizes().vec(), block_size);
}

std::vector<at::Tensor> trainable_parameters(torch::nn::Module& model, const PqLayers& pq) {
  std::vector<at::Tensor> out;
  for (const auto& p : model.parameters())
    if (p.requires_grad()) out.push_back(p);
  for (const auto& c : pq.centroid_parameters()) out.push_back(c);
  return out;
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
  if (!options.resume || options.checkpoint_path.empty() || !std::filesystem::exists(options.checkpoint_path))
    return 0;
  nlohmann::json stored;
  try {
    stored = nlohmann::json::parse(read_checkpoint_metadata(options.checkpoint_path));
  } catch (const nlohmann::json::exception&) {
    throw Error("iPQ checkpoint '" + options.checkpoint_path + "' has unreadable metadata");
  }
  QNOISE_CHECK(stored.value("format", "") == kStageCheckpointFormat, "'", options.checkpoint_path,
               "' is not an iPQ stage checkpoint");
  QNOISE_CHECK(stored.at("task") == task.config() && stored.at("plan") == to_json(options.plan),
               "cannot resume from '", options.checkpoint_path, "': another model or quantization plan made it");
  torch::nn::Module& model = task.model();
  for (const auto& layer : stored.at("layers")) {
    const auto name = layer.at("name").get<std::string>();
    const BlockLayout layout = layout_of(model, name, layer.at("block_size").get<int64_t>());
    const auto k = layer.at("n_centroids").get<int64_t>();
    // Placeholders of the stored shapes; loading overwrites them in place.
    pq.add(model, name, layout, at::zeros({k, layout.block_size()}), at::zeros({layout.n_blocks()}, at::kLong),
           layer.value("centroid_bits", 16));
  }
  if (options.plan.finetune_steps > 0)
    finetuning.optimizer = make_optimizer(trainable_parameters(model, pq), options.optimizer);
  auto holder = stage_state(task, pq);
  load_checkpoint(options.checkpoint_path, *holder, finetuning.optimizer.get());
  pq.refresh_uses();
  pq.write_back();
  finetuning.data_step = stored.at("data_step").get<int64_t>();
  const auto done = stored.at("stages_done").get<int64_t>();
  std::cerr << "resuming iPQ after stage " << done << " of " << options.plan.stages.size() << "\n";
  return done;
}

// k-means on one layer's blocks; the layer then becomes a PQ layer. Returns its report.
PqLayerReport quantize_layer(torch::nn::Module& model, PqLayers& pq, const QuantizationPlan& plan,
                             const PqStage& stage, const std::string& name) {
  const BlockLayout layout = layout_of(model, name, stage.block_size);
  const at::Tensor blocks = layout.to_blocks(registered_weight(model, name).detach().to(at::kCPU, at::kFloat));
  const int64_t k = plan.centroids_for(stage, layout.n_blocks());
  // Seeded by the layer's place in the whole plan, so a resumed run draws the same inits.
  ProductQuantizer quantizer(stage.block_size, ProductQuantizerOptions()
                                                   .set_n_centroids(k)
                                                   .set_n_iterations(plan.kmeans_iterations)
                                                   .set_seed(mix_seed(plan.seed, pq.layers().size())));
  const auto start = std::chrono::steady_clock::now();
  quantizer.train(blocks);
  const at::Tensor codes = quantizer.compute_codes(blocks);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Before add(): `blocks` views the layer's weight, which add() overwrites with the decoded one.
  const at::Tensor stored = round_centroids(quantizer.codebook(), stage.centroid_bits);
  const double error = relative_error(blocks, stored.index_select(0, codes.to(at::kLong)));
  pq.add(model, name, layout, quantizer.codebook(), codes, stage.centroid_bits);
  return {name, stage.name, layout.weight_shape(), stage.block_size, k, error, seconds};
}

void finetune(TrainingTask& task, PqLayers& pq, NoisyLayers& noisy, const IpqOptions& options,
              Finetuning& finetuning, const std::string& stage_name) {
  torch::nn::Module& model = task.model();
  finetuning.optimizer = rebuild_optimizer(finetuning.optimizer.get(), trainable_parameters(model, pq),
                                           options.optimizer);
  const std::vector<at::Tensor> parameters = trainable_parameters(model, pq);
  set_learning_rate(*finetuning.optimizer, options.plan.lr);
  const int64_t per_epoch = task.batches_per_epoch();
  detail::ProgressDisplay progress(options.progress, options.plan.finetune_steps, task.unit_name());
  model.train();
  for (int64_t i = 0; i < options.plan.finetune_steps; ++i) {
    const int64_t index = finetuning.data_step % per_epoch;
    if (i == 0 || index == 0) task.start_epoch(finetuning.data_step / per_epoch);
    finetuning.optimizer->zero_grad();
    BatchLoss batch;
    {
      auto quantized = pq.bind();
      auto noise = noisy.draw();
      batch = task.train_batch(index);
    }
    batch.loss.backward();
    if (options.clip_norm > 0) torch::nn::utils::clip_grad_norm_(parameters, options.clip_norm);
    finetuning.optimizer->step();
    ++finetuning.data_step;
    const double loss = batch.loss.item<double>();
    QNOISE_CHECK(std::isfinite(loss), "iPQ finetuning after stage '", stage_name, "': the loss became ", loss);
    progress.update(i + 1, loss, batch.units, options.plan.lr);
  }
  progress.interrupt();
  pq.write_back();
}

}  // namespace

std::vector<std::vector<std::string>> resolve_plan_layers(torch::nn::Module& model, const QuantizationPlan& plan) {
  std::vector<std::vector<std::string>> layers(plan.stages.size());
  std::vector<std::vector<bool>> matched;
  for (const PqStage& stage : plan.stages) matched.emplace_back(stage.layers.size(), false);
  std::string candidates;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    const WeightSlot slot = find_weight_slot(*item.value());
    if (slot.weight == nullptr) continue;
    candidates += (candidates.empty() ? "" : ", ") + item.key();
    bool taken = false;
    for (size_t s = 0; s < plan.stages.size() && !taken; ++s) {
      for (size_t p = 0; p < plan.stages[s].layers.size() && !taken; ++p) {
        if (!glob_match(plan.stages[s].layers[p], item.key())) continue;
        matched[s][p] = taken = true;
        try {
          BlockLayout(slot.kind, slot.weight->sizes().vec(), plan.stages[s].block_size);
        } catch (const Error& e) {
          throw Error("quantization plan stage '" + plan.stages[s].name + "', layer '" + item.key() + "': " + e.what());
        }
        layers[s].push_back(item.key());
      }
    }
  }
  for (size_t s = 0; s < plan.stages.size(); ++s)
    for (size_t p = 0; p < plan.stages[s].layers.size(); ++p)
      QNOISE_CHECK(matched[s][p], "quantization plan stage '", plan.stages[s].name, "': pattern '",
                   plan.stages[s].layers[p],
                   "' matches no Linear, Conv2d or Embedding layer that an earlier pattern did not take; the model has: ",
                   candidates.empty() ? std::string("none") : candidates);
  return layers;
}

IpqResult run_ipq(TrainingTask& task, PqLayers& pq, const IpqOptions& options) {
  const QuantizationPlan& plan = options.plan;
  torch::nn::Module& model = task.model();
  const auto stage_layers = resolve_plan_layers(model, plan);
  IpqOptions settings = options;
  settings.optimizer.lr = plan.lr;
  Finetuning finetuning;
  const int64_t first = resume_stages(task, pq, settings, finetuning);
  IpqResult result;
  for (size_t s = static_cast<size_t>(first); s < plan.stages.size(); ++s) {
    const PqStage& stage = plan.stages[s];
    for (const std::string& name : stage_layers[s]) {
      result.layers.push_back(quantize_layer(model, pq, plan, stage, name));
      result.kmeans_seconds += result.layers.back().kmeans_seconds;
    }
    // Batch-norm statistics follow the quantized weights (no-op for models without batch norm).
    task.recalibrate_normalization();
    if (plan.finetune_steps > 0) {
      std::vector<NoiseTarget> later;  // Quant-Noise on the layers later stages will quantize
      for (size_t t = s + 1; t < plan.stages.size() && plan.noise_rate > 0; ++t)
        for (const std::string& name : stage_layers[t])
          later.push_back({name, plan.noise_rate, plan.stages[t].block_size, NoiseFunction::pq()});
      NoisyLayers noisy(model, later);
      finetune(task, pq, noisy, settings, finetuning, stage.name);
      task.recalibrate_normalization();
    }
    model.eval();
    result.metrics.clear();
    for (const auto& split : task.eval_splits())
      if (split == "valid") result.metrics[split] = task.evaluate(split);
    if (options.json_log != nullptr) {
      nlohmann::json line = {{"event", "ipq_stage"}, {"stage", stage.name}, {"layers", stage_layers[s].size()}};
      for (const auto& [split, values] : result.metrics)
        for (const auto& [metric, value] : values) line[split][metric] = value;
      *options.json_log << line.dump() << std::endl;
    }
    if (!options.checkpoint_path.empty()) {
      auto holder = stage_state(task, pq);
      save_checkpoint(options.checkpoint_path, *holder, finetuning.optimizer.get(),
                      {static_cast<int64_t>(s + 1), 0,
                       stage_metadata(task, plan, pq, static_cast<int64_t>(s + 1), finetuning.data_step).dump()});
    }
    if (options.stop_after_stage > 0 && static_cast<int64_t>(s + 1) == options.stop_after_stage &&
        s + 1 < plan.stages.size()) {
      result.stopped_early = true;
      break;
    }
  }
  model.eval();
  return result;
}

}  // namespace qnoise
