#pragma once
// The training loop shared by every task: optimizer and LR schedule, Quant-Noise on the task's
// layers, gradient clipping, evaluation with one JSON line per evaluation, atomic checkpoints
// and exact resume, and a progress display.
//
//   torch::manual_seed(seed);                       // fixes the model's initialisation
//   auto task = qnoise::make_training_task({{"task", "image"}});
//   qnoise::TrainerOptions options;
//   options.checkpoint_path = "model.pt";
//   options.noise.pq_rate = 0.1;
//   qnoise::train(*task, options);
#include <c10/core/Device.h>

#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>

#include "qnoise/data_parallel_group.h"
#include "qnoise/gradient_averager.h"
#include "qnoise/lr_schedule.h"
#include "qnoise/optimizer.h"
#include "qnoise/training_task.h"

namespace qnoise {

struct QuantNoiseOptions {
  double pq_rate = 0.0;       // --quant-noise-pq: blocks zeroed (PQ proxy), 0 = off
  bool pq_exact = false;      // --pq-noise exact: blocks replaced by k-means centroids; rate 1 = iPQ QAT
  int64_t codebook_refresh = 100;  // --codebook-refresh: updates between k-means runs (exact noise)
  // Exact noise's codebook size per layer: min(exact_centroids, n_blocks / exact_blocks_per_centroid),
  // the iPQ plan's n_centroids and blocks_per_centroid (--pq-noise-centroids, --pq-noise-blocks-per-centroid).
  int64_t exact_centroids = 256;
  int64_t exact_blocks_per_centroid = 4;
  int64_t pq_block_size = 0;  // --quant-noise-pq-block-size; 0: the task's default (8; 4 for CNNs)
  double scalar_rate = 0.0;   // --quant-noise-scalar: weights fake-quantized, 1 = QAT
  int bits = 8;               // --bits for scalar noise
  bool per_tensor = false;    // --scalar-ranges tensor: one range per weight tensor, not per channel
  int activation_bits = 0;    // --activation-bits: scalar noise on the layers' inputs too (0: off)
  std::string layers;         // glob over layer names; empty: the task's default targets
  bool enabled() const { return pq_rate > 0 || scalar_rate > 0; }
};

// The noise targets `noise` asks for on `task` (empty when noise is off). Throws qnoise::Error
// when both PQ and scalar noise are asked for, a rate is outside [0, 1], or per-tensor ranges or
// activation bits come without scalar noise.
std::vector<NoiseTarget> quant_noise_targets(const TrainingTask& task, const QuantNoiseOptions& noise);
// The options a checkpoint's metadata "noise" records (checkpoint_metadata).
QuantNoiseOptions quant_noise_options_from_json(const nlohmann::json& noise);

struct ProgressOptions {
  enum class Mode { Auto, Bar, Lines, Off };
  Mode mode = Mode::Auto;      // Auto: a bar on a terminal, periodic lines otherwise
  double line_interval_s = 30;  // Lines mode: seconds between lines
};

// "auto", "bar", "lines" or "off"; throws qnoise::Error naming them.
ProgressOptions::Mode parse_progress_mode(const std::string& name);

// schedule.warmup_steps = kAutoWarmup: warm up over the first 10% of the run's updates.
inline constexpr int64_t kAutoWarmup = -1;

struct TrainerOptions {
  OptimizerOptions optimizer;
  LrScheduleOptions schedule;  // schedule.peak_lr is the learning rate; total_steps 0: the run's
  int64_t epochs = 1;
  int64_t max_steps = 0;   // stop after this many updates in all (0: epochs * batches per epoch)
  double clip_norm = 0.0;  // clip the gradients' global L2 norm (0: no clipping)
  int64_t eval_every = 0;  // evaluate every N updates (0: at the end of every epoch)
  int64_t save_every = 0;  // also checkpoint every N updates (0: only when evaluating)
  int64_t stop_after = 0;  // stop after update N as if interrupted, checkpoint written (0: never)
  std::string checkpoint_path;  // required; written atomically
  bool resume = false;     // continue from checkpoint_path when it exists
  // Start from the weights of this checkpoint (finetuning, e.g. with Quant-Noise or QAT); the
  // optimizer, schedule and step start fresh. Ignored when resuming.
  std::string init_from;
  QuantNoiseOptions noise;
  c10::Device device = c10::kCPU;
  ProgressOptions progress;
  std::ostream* json_log = nullptr;  // one JSON line per evaluation (nullptr: std::cout)
  // Data-parallel training (docs/distributed.md): the group this process is a rank of (nullptr:
  // one process). Every rank calls train() with the same task configuration and options; each
  // takes its shard of every batch (the task's batch_size is the whole batch over all ranks),
  // gradients are averaged in buckets during backward(), evaluation is split and combined, and
  // rank 0 alone writes the checkpoint and the JSON lines.
  DataParallelGroup* group = nullptr;
  int64_t bucket_bytes = GradientAverager::kDefaultBucketBytes;
  // Quant-Noise masks are a function of (seed, update), the same on every rank, so a run's result
  // does not depend on its number of ranks; per rank: each rank draws its own (as DDP in fairseq).
  bool noise_per_rank = false;
};

// The settings every rank of a data-parallel run must share (all of TrainerOptions but the
// checkpoint path, the device, the display and the group), as JSON.
nlohmann::json shared_trainer_settings(const TrainerOptions& options);

struct TrainingResult {
  int64_t steps = 0;
  bool stopped_early = false;  // by stop_after
  std::map<std::string, SplitMetrics> metrics;  // the last evaluation, by split
  double train_seconds = 0;       // in updates, evaluation excluded
  double units_per_second = 0;    // images, pairs or tokens per second of training
};

// Settings that train each task kind well on this project's data sets in minutes on a CPU, all
// AdamW with a warm-up over 10% of the run then cosine decay ("image": lr 4e-3, weight decay
// 0.05, 7 epochs; "lm": 1e-3, 0.01, 2 epochs, gradients clipped at 1; "pairs": 3e-4, 0.01,
// 2 epochs, clipped at 1). Command-line options override them.
TrainerOptions default_trainer_options(const std::string& task_kind);

// Trains `task`'s model; returns the last evaluation. Throws qnoise::Error on bad options or a
// checkpoint that does not belong to this task (its configuration differs).
TrainingResult train(TrainingTask& task, const TrainerOptions& options);

// Metrics on every held-out split of the task (evaluate() on each of eval_splits()). With a
// group, each rank evaluates its shard (set_data_shard) and every rank gets the combined metrics.
std::map<std::string, SplitMetrics> evaluate_splits(TrainingTask& task, DataParallelGroup* group = nullptr);
// {"valid": {"loss": ..., "accuracy": ...}, "test": {...}}: how every JSON line reports them.
nlohmann::json metrics_to_json(const std::map<std::string, SplitMetrics>& metrics);

// The metadata object of a qnoise training checkpoint (see checkpoint_metadata). Throws
// qnoise::Error naming the file when it is missing or not such a checkpoint.
nlohmann::json read_training_checkpoint_metadata(const std::string& path);

// Throws qnoise::Error when the task's data gives other artifacts (vocabulary, labels,
// normalization) than `stored_artifacts` of the model in `source`, naming the first difference.
void check_same_artifacts(const TrainingTask& task, const nlohmann::json& stored_artifacts,
                          const std::string& source);

// The checkpoint's metadata: {"format", "task" (configuration), "artifacts", "noise", "metrics"}.
nlohmann::json checkpoint_metadata(const TrainingTask& task, const QuantNoiseOptions& noise,
                                   const std::map<std::string, SplitMetrics>& metrics);

}  // namespace qnoise
