#pragma once
// Iterative product quantization (iPQ) of a built-in task's model: compress_module
// (module_compression.h) with the task's own training loop as the finetuning callback
// (plan.finetune_steps updates per stage over the task's batches, the optimizer's state kept from
// stage to stage), the task's batch-norm re-estimation and calibration passes, an evaluation and
// a checkpoint after each stage, so that a stopped run resumes at the next one.
#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "qnoise/module_compression.h"
#include "qnoise/optimizer.h"
#include "qnoise/pq_layers.h"
#include "qnoise/quantization_plan.h"
#include "qnoise/trainer.h"  // ProgressOptions
#include "qnoise/training_task.h"

namespace qnoise {

struct IpqOptions {
  QuantizationPlan plan;
  OptimizerOptions optimizer;  // lr is the plan's
  double clip_norm = 0.0;
  std::string checkpoint_path;  // written after every stage ("" : none)
  bool resume = false;          // continue after the last stage in checkpoint_path
  int64_t stop_after_stage = 0;  // stop after this many stages, as if interrupted (0: never)
  std::ostream* json_log = nullptr;  // one JSON line per stage (nullptr: none)
  ProgressOptions progress;
  // Data parallel (docs/distributed.md): every rank calls run_ipq with the same task and plan;
  // k-means runs on rank 0 and its codebooks are broadcast; finetuning averages gradients as the
  // trainer does; rank 0 alone writes the stage checkpoints and JSON lines. nullptr: one process.
  DataParallelGroup* group = nullptr;
  int64_t bucket_bytes = GradientAverager::kDefaultBucketBytes;
};

struct IpqResult {
  std::vector<PqLayerReport> layers;
  double kmeans_seconds = 0;  // all layers (this run's stages only when resumed)
  std::map<std::string, SplitMetrics> metrics;  // the last evaluation, by split
  bool stopped_early = false;  // by stop_after_stage
  CompressedModel model;  // the file's contents (empty when stopped early)
};

// The options compress_module needs for the task's model, its callbacks the task's (batch-norm
// re-estimation, calibration passes) and its file metadata the task's (configuration, artifacts).
// With a group: batch-norm statistics averaged over the ranks, k-means on rank 0 only and its
// codebooks broadcast.
ModuleCompressionOptions task_compression_options(TrainingTask& task, const QuantizationPlan& plan,
                                                  DataParallelGroup* group = nullptr);

// Runs the plan on `task`'s model, adding the quantized layers to `pq`, with inputs quantized to
// activation_bits (0: float) calibrated at the end by `activation_ranges` (unset: ranges trained
// with activation noise kept, min-max for the others). The model is left in eval mode holding
// exactly what the result's file holds.
IpqResult run_ipq(TrainingTask& task, PqLayers& pq, const IpqOptions& options, int activation_bits = 0,
                  std::optional<InputRangeObserver> activation_ranges = std::nullopt);

}  // namespace qnoise
