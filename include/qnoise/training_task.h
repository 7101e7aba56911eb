#pragma once
// What the trainer needs from a task (images, language modelling, sentence pairs): a model, the
// training batches of each epoch in an order fixed by (seed, epoch), the loss of one batch, and
// evaluation on the held-out splits. The trainer owns the loop, the optimizer, Quant-Noise,
// checkpoints and logging; a task owns its data and model.
//
// A task is described by a JSON configuration (task kind, data directory, model options, batch
// sizes) that is stored in every checkpoint, so the same model can be rebuilt from it later
// (resume, quantize, eval) with make_training_task().
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qnoise/noisy_layers.h"

namespace qnoise {

struct BatchLoss {
  at::Tensor loss;   // scalar, mean over the batch's (shard's) units, differentiable
  int64_t units = 0;  // images, pairs or target tokens in the batch (for throughput)
  // The shard's part of the whole batch (its rows / the batch's rows): data-parallel ranks weight
  // their mean losses by it, so their gradients add up to the whole batch's mean gradient.
  double share = 1.0;
};

// One data-parallel rank's part of the data: shard `index` of `count`. Every batch of the epoch's
// order (a function of seed and epoch only) is split into `count` contiguous row ranges, so the
// ranks together see exactly the batches one process would, whatever their number.
struct DataShard {
  int64_t index = 0;
  int64_t count = 1;
  // This shard's rows [first, second) of `rows`; sizes differ by at most one.
  std::pair<int64_t, int64_t> range(int64_t rows) const {
    return {rows * index / count, rows * (index + 1) / count};
  }
};

// Metrics of one split: "loss" (mean, nats) always; "ppl" for language models, "accuracy" (in
// [0, 1]) for classifiers; and how many units they average over, under the task's unit_name()
// ("images", "pairs", "tokens"), so shards' metrics can be combined (combine_shard_metrics).
using SplitMetrics = std::map<std::string, double>;

class TrainingTask {
 public:
  virtual ~TrainingTask() = default;

  // "image", "lm" or "pairs".
  virtual std::string kind() const = 0;
  // The configuration this task was built from (see make_training_task).
  virtual nlohmann::json config() const = 0;
  // Extra data the model needs to be used later (e.g. the vocabulary as text, the class names),
  // stored with the checkpoint beside the configuration.
  virtual nlohmann::json artifacts() const = 0;

  virtual torch::nn::Module& model() = 0;
  virtual std::shared_ptr<torch::nn::Module> model_ptr() = 0;
  // Moves the model (and later batches) to `device`.
  virtual void to(const c10::Device& device) = 0;

  // Every epoch has the same number of batches, so a step number alone says where a run is.
  virtual int64_t batches_per_epoch() const = 0;
  // What a batch counts: "images", "pairs" or "tokens".
  virtual std::string unit_name() const = 0;
  // Data-parallel runs: train_batch() returns this shard's rows of each batch and evaluate()
  // covers this shard's part of the split. Default: everything.
  virtual void set_data_shard(const DataShard& shard) = 0;
  // Prepares the order of `epoch`'s batches, a function of (seed, epoch) only.
  virtual void start_epoch(int64_t epoch) = 0;
  // Forward pass and loss on batch `index` (0-based, in order) of the current epoch. Batches are
  // asked for in increasing order; skipped indices are still drawn so a resumed epoch sees the
  // same data as an uninterrupted one.
  virtual BatchLoss train_batch(int64_t index) = 0;

  // Split names evaluate() accepts, e.g. {"valid", "test"}.
  virtual std::vector<std::string> eval_splits() const = 0;
  // Metrics on a held-out split, in eval mode, without gradients. The model is left in eval mode.
  virtual SplitMetrics evaluate(const std::string& split) = 0;
  // "ppl" or "accuracy": the number a user reads first.
  virtual std::string primary_metric() const = 0;

  // Models with batch normalization: re-estimate its running statistics on clean (noise-free)
  // forward passes over training data, without touching the training order or the random
  // generator. Under Quant-Noise the running averages are taken over noisy activations, whose
  // variance differs from the clean ones the model sees at evaluation. Others: nothing to do.
  // Data-parallel runs re-estimate over this shard's part of those batches and return how many
  // batches that was, so ranks can weight their averages (0: nothing to re-estimate).
  virtual int64_t recalibrate_normalization() { return 0; }

  // Clean forward passes (eval mode, no gradients) over the first training examples, enough to
  // calibrate activation ranges (int8 activations), without touching the training order or the
  // random generator.
  virtual void run_calibration_passes() = 0;

  // Buffers the model rebuilds from its configuration (e.g. sinusoidal positions), which a
  // compressed file need not store.
  virtual std::vector<std::string> recomputed_buffers() const { return {}; }

  // The iPQ plan for this model family (JSON, see quantization_plan.h): stages, block sizes, K.
  virtual nlohmann::json default_ipq_plan() const = 0;

  // The PQ block size this family's iPQ plan uses for most weights: 8 for Transformers' Linear and
  // Embedding rows, 4 input channels for CNNs' 1x1 convolutions.
  virtual int64_t default_pq_block_size() const { return 8; }

  // Quant-Noise targets for this model family: every Linear/Conv2d/Embedding, with `block_size`
  // where it divides the rows and the family's natural block elsewhere (whole k x k kernels for
  // convolutions). Scalar noise (block_size 1) covers every weight.
  virtual std::vector<NoiseTarget> noise_targets(double rate, int64_t block_size,
                                                 const NoiseFunction& function) const = 0;
};

// Builds a task from its configuration. `config["task"]` picks the kind; missing keys take their
// defaults; unknown keys are errors (they are usually typos). Throws qnoise::Error naming the
// problem (unknown task or key, bad value, unreadable data).
std::unique_ptr<TrainingTask> make_training_task(const nlohmann::json& config);

// The configuration make_training_task() would use for `config`: defaults filled in, so two
// configurations can be compared key by key.
nlohmann::json complete_task_config(const nlohmann::json& config);

}  // namespace qnoise
