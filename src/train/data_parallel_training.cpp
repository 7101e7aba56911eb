#include "train/data_parallel_training.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <mutex>

#include "qnoise/seeded_order.h"

namespace qnoise::detail {

namespace {

// Streams of mix_seed(seed, ·) that no other part of a run uses.
constexpr uint64_t kNoiseStream = 0x6e6f697365;       // "noise"
constexpr uint64_t kGeneratorStream = 0x72616e6b73;   // "ranks"

bool ends_with(const std::string& name, const std::string& suffix) {
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void broadcast_module(DataParallelGroup& group, torch::nn::Module& module) {
  std::vector<at::Tensor> tensors;
  for (const auto& p : module.parameters()) tensors.push_back(p);
  for (const auto& b : module.buffers()) tensors.push_back(b);
  group.broadcast(tensors, 0);
}

std::map<std::string, SplitMetrics> combine_shard_metrics(DataParallelGroup& group,
                                                          const std::map<std::string, SplitMetrics>& metrics,
                                                          const std::string& unit_name) {
  // One buffer for every split: [units, units * metric...] in the maps' (sorted) order.
  std::vector<double> values;
  for (const auto& [split, split_metrics] : metrics) {
    const double units = split_metrics.at(unit_name);
    values.push_back(units);
    for (const auto& [name, value] : split_metrics)
      if (name != unit_name && name != "ppl") values.push_back(value * units);
  }
  std::vector<at::Tensor> sums{at::tensor(values, at::kDouble)};
  group.all_reduce_sum(sums);
  const double* total = sums[0].data_ptr<double>();
  std::map<std::string, SplitMetrics> combined;
  size_t i = 0;
  for (const auto& [split, split_metrics] : metrics) {
    const double units = total[i++];
    SplitMetrics& out = combined[split];
    out[unit_name] = units;
    for (const auto& [name, value] : split_metrics)
      if (name != unit_name && name != "ppl") {
        const double sum = total[i++];
        out[name] = units > 0 ? sum / units : 0.0;
      }
    if (split_metrics.count("ppl") > 0) out["ppl"] = std::exp(out.at("loss"));
  }
  return combined;
}

void average_normalization_statistics(DataParallelGroup& group, torch::nn::Module& module, int64_t batches) {
  std::vector<at::Tensor> statistics, counters;
  for (const auto& item : module.named_buffers()) {
    if (ends_with(item.key(), "running_mean") || ends_with(item.key(), "running_var"))
      statistics.push_back(item.value());
    else if (ends_with(item.key(), "num_batches_tracked"))
      counters.push_back(item.value());
  }
  std::vector<at::Tensor> total{at::full({1}, static_cast<double>(batches), at::kDouble)};
  group.all_reduce_sum(total);
  const double all_batches = total[0].item<double>();
  if (all_batches == 0) return;
  at::NoGradGuard no_grad;
  for (auto& s : statistics) s.mul_(static_cast<double>(batches) / all_batches);
  group.all_reduce_sum(statistics);
  group.all_reduce_sum(counters);
}

void seed_rank_generator(uint64_t seed, int64_t step, int64_t rank) {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_current_seed(
      mix_seed(mix_seed(mix_seed(seed, kGeneratorStream), static_cast<uint64_t>(step)), static_cast<uint64_t>(rank)));
}

uint64_t noise_seed(uint64_t seed, int64_t step, int64_t rank, bool per_rank) {
  const uint64_t shared = mix_seed(mix_seed(seed, kNoiseStream), static_cast<uint64_t>(step));
  return per_rank ? mix_seed(shared, static_cast<uint64_t>(rank)) : shared;
}

}  // namespace qnoise::detail
