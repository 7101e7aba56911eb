#include "train/language_model_task.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <cmath>

#include "qnoise/seeded_order.h"
#include "train/default_plans.h"
#include "train/task_config.h"
#include "train/task_models.h"

namespace qnoise::detail {

nlohmann::json LanguageModelTask::defaults() {
  nlohmann::json model = transformer_model_defaults();
  model.update({{"learned_positions", false},
                {"adaptive_input", false},
                {"adaptive_softmax", false},
                {"cutoffs", std::vector<int64_t>{2000, 6000}},  // used by the adaptive layers only
                {"adaptive_factor", 4.0}});
  return {{"task", "lm"},
          {"data", ""},  // a directory of wiki.{train,valid,test}.tokens
          {"seed", 1},
          {"batch_size", 16},
          {"seq_len", 128},
          {"eval_batch_size", 16},
          {"min_count", 1},
          {"max_vocab", 0},
          {"train_limit", 0},  // use only the first this many training tokens (0: all)
          {"model", model}};
}

LanguageModelTask::LanguageModelTask(const nlohmann::json& config) : config_(config) {
  const auto directory = config_value<std::string>(config, "data");
  QNOISE_CHECK(!directory.empty(), "lm task: no data directory given (a directory of wiki.{train,valid,test}.tokens, e.g. from `qnoise data kjv --out DIR`)");
  corpus_ = load_wikitext(directory, VocabularyOptions()
                                         .set_min_count(config_value<int64_t>(config, "min_count"))
                                         .set_max_size(config_value<int64_t>(config, "max_vocab")));
  const auto limit = config_value<int64_t>(config, "train_limit");
  QNOISE_CHECK(limit >= 0, "lm task: train_limit must be >= 0, got ", limit);
  if (limit > 0 && limit < corpus_.train.size(0)) corpus_.train = corpus_.train.slice(0, 0, limit);

  const auto seq_len = config_value<int64_t>(config, "seq_len");
  model_ = make_language_model(config, corpus_.vocabulary.size());

  const auto batch_size = config_value<int64_t>(config, "batch_size");
  eval_batch_size_ = config_value<int64_t>(config, "eval_batch_size");
  QNOISE_CHECK(batch_size > 0 && eval_batch_size_ > 0 && seq_len > 0,
               "lm task: batch sizes and seq_len must be positive");
  QNOISE_CHECK(corpus_.train.size(0) >= batch_size * 2, "lm task: the training split has ",
               corpus_.train.size(0), " tokens, too few for batch_size ", batch_size);
  train_batches_.emplace(corpus_.train, batch_size, seq_len);
}

nlohmann::json LanguageModelTask::artifacts() const {
  return {{"vocabulary", corpus_.vocabulary.to_text()}};
}

std::vector<std::string> LanguageModelTask::recomputed_buffers() const {
  return language_model_recomputed_buffers();
}

void LanguageModelTask::to(const c10::Device& device) {
  device_ = device;
  model_->to(device);
}

void LanguageModelTask::start_epoch(int64_t epoch) {
  order_ = epoch_permutation(train_batches_->size(), config_value<uint64_t>(config_, "seed"), epoch);
}

BatchLoss LanguageModelTask::train_batch(int64_t index) {
  QNOISE_CHECK(index >= 0 && index < static_cast<int64_t>(order_.size()), "lm task: no batch ", index);
  const LmBatch batch = train_batches_->batch(order_[index]);
  model_->train();
  // Every row has seq_len targets, so a shard's mean over its rows weighs by its rows.
  const int64_t rows = batch.input.size(0);
  const auto [first, last] = shard_.range(rows);
  QNOISE_CHECK(last > first, "lm task: a batch of ", rows, " sequences cannot be split over ", shard_.count,
               " ranks (raise --batch-size)");
  const at::Tensor input = batch.input.slice(0, first, last).to(device_);
  const at::Tensor target = batch.target.slice(0, first, last).to(device_);
  return {model_->loss(input, target), target.numel(), static_cast<double>(last - first) / static_cast<double>(rows)};
}

void LanguageModelTask::run_calibration_passes() {
  constexpr int64_t kBatches = 16;  // 16 x batch_size windows in corpus order
  model_->eval();
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < std::min<int64_t>(kBatches, train_batches_->size()); ++i) {
    const LmBatch batch = train_batches_->batch(i);
    model_->loss(batch.input.to(device_), batch.target.to(device_));
  }
}

SplitMetrics LanguageModelTask::evaluate(const std::string& split) {
  QNOISE_CHECK(split == "valid" || split == "test", "lm task: no split '", split, "'");
  const at::Tensor& stream = split == "valid" ? corpus_.valid : corpus_.test;
  // Small splits get fewer rows rather than none.
  const int64_t rows = std::max<int64_t>(1, std::min(eval_batch_size_, stream.size(0) / 2));
  const LmBatcher batches(stream, rows, config_value<int64_t>(config_, "seq_len"));
  model_->eval();
  torch::NoGradGuard no_grad;
  double nll_sum = 0;
  int64_t tokens = 0;
  const auto [first, last] = shard_.range(batches.size());
  for (int64_t i = first; i < last; ++i) {
    const LmBatch batch = batches.batch(i);
    const int64_t n = batch.target.numel();
    nll_sum += model_->loss(batch.input.to(device_), batch.target.to(device_)).item<double>() * n;
    tokens += n;
  }
  const double loss = nll_sum / static_cast<double>(std::max<int64_t>(1, tokens));  // an empty shard: zeros
  return {{"loss", loss}, {"ppl", std::exp(loss)}, {"tokens", static_cast<double>(tokens)}};
}

std::vector<NoiseTarget> LanguageModelTask::noise_targets(double rate, int64_t block_size,
                                                          const NoiseFunction& function) const {
  // Every Linear and Embedding (attention, FFN, embeddings, adaptive bands and projections).
  return {{"*", rate, block_size, function}};
}

nlohmann::json LanguageModelTask::default_ipq_plan() const { return transformer_ipq_plan(*model_, 2e-4, 300); }

}  // namespace qnoise::detail
