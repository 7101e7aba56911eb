#pragma once
// What training loops (the trainer, iPQ finetuning) do differently on data-parallel ranks: same
// starting weights everywhere, metrics and batch-norm statistics combined over the shards, and
// the random streams each rank draws from.
#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <string>

#include "qnoise/data_parallel_group.h"
#include "qnoise/training_task.h"

namespace qnoise::detail {

// Every rank takes rank 0's parameters and buffers.
void broadcast_module(DataParallelGroup& group, torch::nn::Module& module);

// Metrics of every rank's shard combined into the whole split's: means weighted by the units
// each shard counted (the `unit_name` entry, summed); "ppl" is exp of the combined loss.
std::map<std::string, SplitMetrics> combine_shard_metrics(DataParallelGroup& group,
                                                          const std::map<std::string, SplitMetrics>& metrics,
                                                          const std::string& unit_name);

// After every rank re-estimated its batch-norm statistics over `batches` of its own: the running
// means and variances become the batch-weighted averages over the ranks (what one process that
// ran all the batches holds), num_batches_tracked the sum.
void average_normalization_statistics(DataParallelGroup& group, torch::nn::Module& module, int64_t batches);

// Seeds torch's default generator (dropout, LayerDrop) for update `step` on `rank`: each rank has
// its own stream, and the streams depend on (seed, step, rank) only, so a resumed run draws what
// an uninterrupted one would.
void seed_rank_generator(uint64_t seed, int64_t step, int64_t rank);

// The Quant-Noise mask seed of update `step`: the same on every rank unless `per_rank`.
uint64_t noise_seed(uint64_t seed, int64_t step, int64_t rank, bool per_rank);

}  // namespace qnoise::detail
