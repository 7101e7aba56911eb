#pragma once
// Iterative product quantization (iPQ) of a task's model, stage by stage as a QuantizationPlan
// says: k-means each stage's layers (ProductQuantizer), make them PQ layers with trainable
// centroids (PqLayers), re-estimate batch-norm statistics, then finetune the centroids and every
// parameter still float for plan.finetune_steps updates with Quant-Noise on the layers of later
// stages. The optimizer's state for the parameters that remain is kept from stage to stage, and a
// checkpoint after each stage lets a stopped run resume at the next one.
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

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
};

// One quantized layer, for the per-layer table.
struct PqLayerReport {
  std::string name;
  std::string stage;
  std::vector<int64_t> shape;
  int64_t block_size = 0;
  int64_t n_centroids = 0;
  double relative_error = 0;  // ||W - decoded||_F / ||W||_F right after k-means
  double kmeans_seconds = 0;
};

struct IpqResult {
  std::vector<PqLayerReport> layers;
  double kmeans_seconds = 0;  // all layers (this run's stages only when resumed)
  std::map<std::string, SplitMetrics> metrics;  // the last evaluation, by split
  bool stopped_early = false;  // by stop_after_stage
};

// Which layers each stage takes: every Linear/Conv2d/Embedding goes to the first stage with a
// pattern matching its name. Throws qnoise::Error naming the stage and pattern when a pattern
// matches no layer, and naming the layer when a block size does not divide it.
std::vector<std::vector<std::string>> resolve_plan_layers(torch::nn::Module& model, const QuantizationPlan& plan);

// Runs the plan on `task`'s model, adding the quantized layers to `pq`. The model is left in eval
// mode holding the quantized weights.
IpqResult run_ipq(TrainingTask& task, PqLayers& pq, const IpqOptions& options);

}  // namespace qnoise
