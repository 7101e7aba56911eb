#include "qnoise/module_compression.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>

#include <chrono>

#include "qnoise/activation_quant.h"
#include "qnoise/error.h"
#include "qnoise/model_loading.h"
#include "qnoise/product_quantizer.h"
#include "qnoise/scalar_quantizer.h"
#include "qnoise/seeded_order.h"

namespace qnoise {

namespace {

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

// k-means on one layer's blocks; the layer then becomes a PQ layer. Returns its report.
PqLayerReport quantize_pq_layer(torch::nn::Module& model, PqLayers& pq, const ModuleCompressionOptions& options,
                                const PqStage& stage, const std::string& name) {
  const QuantizationPlan& plan = options.plan;
  const BlockLayout layout = layout_of(model, name, stage.block_size);
  const at::Tensor blocks = layout.to_blocks(registered_weight(model, name).detach().to(at::kCPU, at::kFloat));
  const int64_t k = plan.centroids_for(stage, layout.n_blocks());
  // Seeded by the layer's place in the whole plan, so a resumed run draws the same inits.
  ProductQuantizer quantizer(stage.block_size, ProductQuantizerOptions()
                                                   .set_n_centroids(k)
                                                   .set_n_iterations(plan.kmeans_iterations)
                                                   .set_seed(mix_seed(plan.seed, pq.layers().size())));
  const auto start = std::chrono::steady_clock::now();
  at::Tensor codebook, codes;
  if (options.run_kmeans) {
    quantizer.train(blocks);
    codebook = quantizer.codebook();
    codes = quantizer.compute_codes(blocks);
  } else {
    codebook = at::zeros({k, stage.block_size}, at::kFloat);
    codes = at::zeros({layout.n_blocks()}, ProductQuantizer::index_dtype(k));
  }
  if (options.share_codebook) options.share_codebook(codebook, codes);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Before add(): `blocks` views the layer's weight, which add() overwrites with the decoded one.
  const at::Tensor stored = round_centroids(codebook, stage.centroid_bits);
  const double error = relative_error(blocks, stored.index_select(0, codes.to(at::kLong)));
  pq.add(model, name, layout, codebook, codes, stage.centroid_bits);
  return {name, stage.name, layout.weight_shape(), stage.block_size, k, error, seconds, "pq"};
}

// Per-channel int8 / int4 of one layer; its weight then holds the decoded values and is frozen.
PqLayerReport quantize_scalar_layer(torch::nn::Module& model, const PqStage& stage, const std::string& name,
                                    std::map<std::string, CompressedWeight>& weights) {
  at::NoGradGuard no_grad;
  const int bits = stage.scheme == StageScheme::Int8 ? 8 : 4;
  at::Tensor weight = registered_weight(model, name);
  const at::Tensor original = weight.detach().to(at::kCPU, at::kFloat);
  CompressedWeight stored = compress_scalar(original, bits, ScalarObserver::MinMax, !stage.per_tensor);
  const at::Tensor decoded = stored.decode();
  const double error = relative_error(original, decoded);
  weight.copy_(decoded);
  weight.requires_grad_(false);
  weights.insert_or_assign(name + ".weight", std::move(stored));
  return {name, stage.name, weight.sizes().vec(), 1, int64_t{1} << bits, error, 0.0, to_string(stage.scheme)};
}

// Quant-Noise on the layers that the stages after `stage` will quantize.
std::vector<NoiseTarget> later_stage_noise(const QuantizationPlan& plan,
                                           const std::vector<std::vector<std::string>>& stage_layers, size_t stage) {
  std::vector<NoiseTarget> later;
  if (plan.noise_rate <= 0) return later;
  for (size_t t = stage + 1; t < plan.stages.size(); ++t) {
    const PqStage& next = plan.stages[t];
    // Scalar stages' noise is their own fake quantization on single weights; PQ stages' the
    // cheap proxy on their blocks.
    const bool pq = next.scheme == StageScheme::Pq;
    const NoiseFunction function =
        pq ? NoiseFunction::pq()
           : NoiseFunction::fake_quant(ScalarQuantizerOptions()
                                           .set_bits(next.scheme == StageScheme::Int8 ? 8 : 4)
                                           .set_per_channel(!next.per_tensor));
    for (const std::string& name : stage_layers[t])
      later.push_back({name, plan.noise_rate, pq ? next.block_size : 1, function});
  }
  return later;
}

void calibrate_input_ranges(torch::nn::Module& module, const std::function<void()>& passes, int bits,
                            std::optional<InputRangeObserver> observer) {
  QNOISE_CHECK(static_cast<bool>(passes), "quantized activations need calibration passes (ModuleCompressionOptions::calibration_passes)");
  enable_input_quantization(module, {}, bits);
  if (observer) restart_input_calibration(module);  // a chosen observer replaces trained ranges too
  module.eval();
  {
    at::NoGradGuard no_grad;
    passes();  // min and max
    if (observer == InputRangeObserver::Mse) {
      InputHistogramScope histograms(module);
      passes();
      histograms.finish();
    }
  }
  finish_input_calibration(module);
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
          const int64_t block_size = plan.stages[s].scheme == StageScheme::Pq ? plan.stages[s].block_size : 1;
          BlockLayout(slot.kind, slot.weight->sizes().vec(), block_size);
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

FinetuneStage::FinetuneStage(torch::nn::Module& model, PqLayers& pq, NoisyLayers& noisy, const PqStage& stage,
                             size_t index)
    : model_(model), pq_(pq), noisy_(noisy), stage_(stage), index_(index) {}

std::vector<at::Tensor> trainable_parameters(torch::nn::Module& model, const PqLayers& pq) {
  std::vector<at::Tensor> out;
  for (const auto& p : model.parameters())
    if (p.requires_grad()) out.push_back(p);
  for (const auto& c : pq.centroid_parameters()) out.push_back(c);
  return out;
}

std::vector<at::Tensor> FinetuneStage::parameters() const { return trainable_parameters(model_, pq_); }

ForwardScope FinetuneStage::forward_scope() { return ForwardScope{pq_.bind(), noisy_.draw()}; }

ForwardScope FinetuneStage::forward_scope(uint64_t noise_seed) {
  return ForwardScope{pq_.bind(), noisy_.draw(noise_seed)};
}

ModuleCompression compress_module(torch::nn::Module& module, const ModuleCompressionOptions& options, PqLayers* pq) {
  const QuantizationPlan& plan = options.plan;
  QNOISE_CHECK(!plan.stages.empty(), "the quantization plan has no stages");
  QNOISE_CHECK(options.activation_bits == 0 || options.calibration_passes,
               "quantized activations need calibration passes (ModuleCompressionOptions::calibration_passes)");
  const auto stage_layers = resolve_plan_layers(module, plan);
  PqLayers own_pq;
  PqLayers& pq_layers = pq != nullptr ? *pq : own_pq;
  ModuleCompression result;
  // Stages done before a resume: their int8 / int4 layers hold decoded weights, encoded again.
  for (size_t s = 0; s < options.first_stage && s < plan.stages.size(); ++s)
    if (plan.stages[s].scheme != StageScheme::Pq)
      for (const std::string& name : stage_layers[s]) quantize_scalar_layer(module, plan.stages[s], name, result.weights);
  for (size_t s = options.first_stage; s < plan.stages.size(); ++s) {
    const PqStage& stage = plan.stages[s];
    for (const std::string& name : stage_layers[s]) {
      if (stage.scheme == StageScheme::Pq) {
        result.layers.push_back(quantize_pq_layer(module, pq_layers, options, stage, name));
        result.kmeans_seconds += result.layers.back().kmeans_seconds;
      } else {
        result.layers.push_back(quantize_scalar_layer(module, stage, name, result.weights));
      }
    }
    // Batch-norm statistics follow the quantized weights.
    if (options.recalibrate_normalization) options.recalibrate_normalization();
    if (options.finetune) {
      NoisyLayers noisy(module, later_stage_noise(plan, stage_layers, s));
      FinetuneStage finetuning(module, pq_layers, noisy, stage, s);
      module.train();
      options.finetune(finetuning);
      pq_layers.write_back();
      if (options.recalibrate_normalization) options.recalibrate_normalization();
    }
    module.eval();
    if (options.after_stage) options.after_stage({s, pq_layers, result.layers});
    if (options.stop_after_stage > 0 && s + 1 == options.stop_after_stage && s + 1 < plan.stages.size()) {
      result.stopped_early = true;
      return result;
    }
  }
  for (auto& [name, weight] : pq_weights(pq_layers)) result.weights.insert_or_assign(name, std::move(weight));

  CompressedModelInfo info = options.file_info;
  if (!info.plan.is_object()) info.plan = nlohmann::json::object();
  bool any_pq = false, all_pq = true;
  for (const PqStage& stage : plan.stages) {
    any_pq = any_pq || stage.scheme == StageScheme::Pq;
    all_pq = all_pq && stage.scheme == StageScheme::Pq;
  }
  if (!info.plan.contains("scheme"))
    info.plan["scheme"] = all_pq ? std::string("ipq") : plan.stages.size() == 1 ? to_string(plan.stages[0].scheme) : "mixed";
  if (any_pq || plan.stages.size() > 1) info.plan["ipq"] = to_json(plan);
  info.rest = plan.rest == "float32" ? WeightScheme::Float32 : WeightScheme::Float16;
  if (options.activation_bits != 0) {
    calibrate_input_ranges(module, options.calibration_passes, options.activation_bits, options.activation_ranges);
    info.plan["activations"] = "int" + std::to_string(options.activation_bits);
    if (options.activation_ranges) info.plan["activation_ranges"] = to_string(*options.activation_ranges);
  }
  info.plan["rest"] = to_string(info.rest);
  result.model = make_compressed_model(module, result.weights, info);
  load_compressed_tensors(module, result.model, info.recomputed_buffers);  // the rest as stored (float16)
  module.eval();
  return result;
}

void reestimate_batch_norm(torch::nn::Module& module, const std::function<void()>& passes) {
  std::vector<torch::nn::Module*> norms;
  std::vector<c10::optional<double>*> momenta;
  for (const auto& item : module.modules()) {
    if (auto* norm = item->as<torch::nn::BatchNorm2d>()) {
      norm->reset_running_stats();
      norms.push_back(norm);
      momenta.push_back(&norm->options.momentum());
    } else if (auto* norm1d = item->as<torch::nn::BatchNorm1d>()) {
      norm1d->reset_running_stats();
      norms.push_back(norm1d);
      momenta.push_back(&norm1d->options.momentum());
    }
  }
  if (norms.empty()) return;
  // Eval mode everywhere (no dropout draws from the generator) but in the normalization layers,
  // which accumulate a plain average (momentum unset) over the batches.
  module.eval();
  std::vector<c10::optional<double>> saved;
  for (size_t i = 0; i < norms.size(); ++i) {
    saved.push_back(*momenta[i]);
    *momenta[i] = c10::nullopt;
    norms[i]->train();
  }
  {
    at::NoGradGuard no_grad;
    passes();
  }
  for (size_t i = 0; i < norms.size(); ++i) *momenta[i] = saved[i];
  module.eval();
}

}  // namespace qnoise
