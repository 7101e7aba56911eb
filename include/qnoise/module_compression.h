#pragma once
// Compression of any torch::nn::Module by a quantization plan (quantization_plan.h): stage by stage,
// each stage's Linear / Conv2d / Embedding layers become PQ layers (k-means, trainable centroids)
// or per-channel int8 / int4 layers; after each stage the caller's callbacks re-estimate batch-norm
// statistics and finetune what is still trainable (the centroids and every float parameter) with
// Quant-Noise on the layers of later stages. The result is the file's contents: write it with
// write_qnz, load it into a fresh instance with load_packed_module (runtime_model.h).
//
//   qnoise::ModuleCompressionOptions options;
//   options.plan = qnoise::parse_quantization_plan(plan_json);
//   options.finetune = [&](qnoise::FinetuneStage& stage) {
//     torch::optim::Adam adam(stage.parameters(), 1e-4);
//     for (auto& [x, y] : my_batches) {
//       torch::Tensor loss;
//       { auto scope = stage.forward_scope(); loss = my_loss(model->forward(x), y); }
//       adam.zero_grad(); loss.backward(); adam.step();
//     }
//   };
//   qnoise::CompressedModel file = qnoise::compress_module(*model, options).model;
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qnoise/compressed_weight.h"
#include "qnoise/input_range_observer.h"
#include "qnoise/model_compression.h"
#include "qnoise/noisy_layers.h"
#include "qnoise/pq_layers.h"
#include "qnoise/qnz_file.h"
#include "qnoise/quantization_plan.h"

namespace qnoise {

// One quantized layer, for the per-layer table.
struct PqLayerReport {
  std::string name;
  std::string stage;
  std::vector<int64_t> shape;
  int64_t block_size = 0;   // PQ: d; int8 / int4: 1
  int64_t n_centroids = 0;  // PQ: K; int8 / int4: 256 / 16 levels
  double relative_error = 0;  // ||W - decoded||_F / ||W||_F right after quantization
  double kmeans_seconds = 0;  // PQ only
  std::string scheme = "pq";  // "pq", "int8", "int4"
};

// Which layers each stage takes: every Linear/Conv2d/Embedding goes to the first stage with a
// pattern matching its name. Throws qnoise::Error naming the stage and pattern when a pattern
// matches no layer, and naming the layer when a PQ block size does not divide it.
std::vector<std::vector<std::string>> resolve_plan_layers(torch::nn::Module& model, const QuantizationPlan& plan);

// What finetuning optimizes: every parameter of `model` that still requires grad (quantized layers'
// weights are frozen) and every PQ layer's centroids.
std::vector<at::Tensor> trainable_parameters(torch::nn::Module& model, const PqLayers& pq);

// The forward passes of one finetuning step: PQ layers' weights decoded from their trainable
// centroids and fresh Quant-Noise on the layers of later stages, until it is destroyed. Hold it
// while the model computes the loss; call backward() after.
struct ForwardScope {
  PqLayers::Scope quantized;
  NoisyLayers::Scope noise;
};

// What the finetuning callback gets after a stage is quantized.
class FinetuneStage {
 public:
  FinetuneStage(torch::nn::Module& model, PqLayers& pq, NoisyLayers& noisy, const PqStage& stage, size_t index);
  const PqStage& stage() const { return stage_; }
  size_t index() const { return index_; }  // 0-based, in the plan
  torch::nn::Module& model() { return model_; }
  // What to optimize now (trainable_parameters). Adam's state of a parameter that stays from stage
  // to stage may be carried over by the caller.
  std::vector<at::Tensor> parameters() const;
  [[nodiscard]] ForwardScope forward_scope();
  // The same with Quant-Noise masks that depend on `noise_seed` only (NoisyLayers::draw(seed)), so
  // data-parallel ranks that pass the same seed noise the same blocks.
  [[nodiscard]] ForwardScope forward_scope(uint64_t noise_seed);

 private:
  torch::nn::Module& model_;
  PqLayers& pq_;
  NoisyLayers& noisy_;
  const PqStage& stage_;
  size_t index_;
};

struct ModuleCompressionOptions {
  QuantizationPlan plan;
  // Runs the caller's training loop after each stage (with plan.noise_rate Quant-Noise on later
  // stages' layers); the PQ layers' weights are written back from their centroids after it
  // returns. Empty: no finetuning.
  std::function<void(FinetuneStage&)> finetune;
  // Re-estimates batch-norm statistics of the quantized model (after each stage's quantization
  // and its finetuning), e.g. reestimate_batch_norm(module, passes). Empty: left as they are.
  std::function<void()> recalibrate_normalization;
  // Quantized activations (2..8 bits; 0: float): every Linear/Conv2d layer's input fake-quantized
  // per tensor to that many bits, its range calibrated on `calibration_passes` (clean forward
  // passes over representative inputs, which qnoise runs in eval mode without gradients). Required
  // when activation_bits is set.
  int activation_bits = 0;
  std::function<void()> calibration_passes;
  // How calibration picks each input range (input_range_observer.h); Mse runs the passes twice.
  // Unset: layers trained with activation noise keep the ranges they trained with and the others
  // take min and max. Set: every layer's range is calibrated afresh by that observer.
  std::optional<InputRangeObserver> activation_ranges;
  // Called after each stage (and its finetuning): for evaluation, logs and checkpoints.
  struct StageDone {
    size_t index;                             // the stage's, in the plan
    const PqLayers& pq;                       // every PQ layer so far
    const std::vector<PqLayerReport>& layers;  // the layers quantized so far (this run)
  };
  std::function<void(const StageDone&)> after_stage;
  // Resuming: the stages before this one are done (their PQ layers already in the PqLayers given
  // to compress_module, their int8 / int4 layers holding decoded weights, which are encoded
  // again). Stops after `stop_after_stage` stages when > 0, as if interrupted.
  size_t first_stage = 0;
  size_t stop_after_stage = 0;
  // Data-parallel callers: k-means runs only where run_kmeans is set (one rank), and
  // share_codebook, called on every process for every PQ layer in plan order, gives each that
  // one's centroids [K, block] and codes [n_blocks] (e.g. a broadcast), so every rank holds the
  // same codebooks. Elsewhere both tensors are zeros of the right shapes and dtypes.
  bool run_kmeans = true;
  std::function<void(at::Tensor& centroids, at::Tensor& codes)> share_codebook;
  // What the file records beside the tensors (plan and activations are filled in).
  CompressedModelInfo file_info;
};

struct ModuleCompression {
  CompressedModel model;  // the file's contents (empty when stopped early)
  std::map<std::string, CompressedWeight> weights;  // the quantized layers' weights by parameter name
  std::vector<PqLayerReport> layers;
  double kmeans_seconds = 0;
  bool stopped_early = false;
};

// Compresses `module` in place by options.plan: afterwards it holds exactly what the file holds
// (the quantized layers' decoded weights; float16 rounding of the rest when file_info.rest says
// so), in eval mode, so evaluating it gives the file's numbers. `pq` (optional) receives the PQ
// layers. Throws qnoise::Error for a plan that does not fit the module (resolve_plan_layers), or
// quantized activations without calibration passes.
ModuleCompression compress_module(torch::nn::Module& module, const ModuleCompressionOptions& options,
                                  PqLayers* pq = nullptr);

// Batch-norm statistics re-estimated from clean forward passes: every BatchNorm1d/2d's running
// statistics reset and recomputed as the plain average over the batches `passes` runs (each
// batch norm in training mode, the rest of the model in eval mode, without gradients). Models
// without batch norm: nothing happens.
void reestimate_batch_norm(torch::nn::Module& module, const std::function<void()>& passes);

}  // namespace qnoise
