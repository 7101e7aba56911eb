#include "train/sentence_pair_task.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <filesystem>
#include <numeric>
#include <unordered_map>

#include "qnoise/kjv_corpus.h"  // tokenize_kjv: words and punctuation, for any English text
#include "qnoise/seeded_order.h"
#include "train/default_plans.h"
#include "train/task_config.h"
#include "train/task_models.h"

namespace qnoise::detail {

namespace {

int64_t pair_length(const SentencePairTask::EncodedSplit& split, int64_t index) {
  return static_cast<int64_t>(split.pairs[index].first.size() + split.pairs[index].second.size());
}

// Sorts each run of `chunk` indices by pair length (stable), so batches cut from it hold pairs of
// similar lengths and little padding.
void sort_chunks_by_length(std::vector<int64_t>& indices, const SentencePairTask::EncodedSplit& split,
                           size_t chunk) {
  for (size_t start = 0; start < indices.size(); start += chunk) {
    const auto end = indices.begin() + std::min(indices.size(), start + chunk);
    std::stable_sort(indices.begin() + start, end,
                     [&](int64_t a, int64_t b) { return pair_length(split, a) < pair_length(split, b); });
  }
}

SentencePairTask::EncodedSplit encode_split(const SentencePairSet& set, const Vocabulary& vocabulary) {
  SentencePairTask::EncodedSplit split;
  for (const auto& pair : set.pairs) {
    split.pairs.emplace_back(encode_sentence(vocabulary, pair.premise), encode_sentence(vocabulary, pair.hypothesis));
    split.labels.push_back(pair.label);
  }
  return split;
}

}  // namespace

namespace {

nlohmann::json model_defaults() {
  nlohmann::json model = transformer_model_defaults();
  model["pooling"] = "cls+pair";  // "cls" alone stayed at chance on KJV next-verse pairs
  return model;
}

}  // namespace

nlohmann::json SentencePairTask::defaults() {
  return {{"task", "pairs"},
          {"data", ""},  // a directory of TSV files
          {"train_file", "train.tsv"},
          {"valid_file", "valid.tsv"},  // MNLI: dev_matched.tsv
          {"test_file", "test.tsv"},    // "" for none (MNLI's test labels are hidden)
          {"seed", 1},
          {"batch_size", 32},
          {"eval_batch_size", 128},
          {"max_length", 128},  // tokens per encoded pair, <s> and both </s> included
          {"min_count", 1},
          {"max_vocab", 0},
          {"train_limit", 0},  // use only the first this many training pairs (0: all)
          {"model", model_defaults()}};
}

SentencePairTask::SentencePairTask(const nlohmann::json& config) : config_(config) {
  const auto directory = config_value<std::string>(config, "data");
  QNOISE_CHECK(!directory.empty(), "pairs task: no data directory given (TSV files, e.g. from `qnoise data kjv-pairs --out DIR`)");
  const auto path = [&](const std::string& key) {
    return (std::filesystem::path(directory) / config_value<std::string>(config, key)).string();
  };
  SentencePairSet train = read_sentence_pairs(path("train_file"));
  const auto limit = config_value<int64_t>(config, "train_limit");
  QNOISE_CHECK(limit >= 0, "pairs task: train_limit must be >= 0, got ", limit);
  if (limit > 0 && limit < static_cast<int64_t>(train.pairs.size())) train.pairs.resize(limit);
  label_names_ = train.label_names;

  std::unordered_map<std::string, int64_t> counts;
  for (const auto& pair : train.pairs) {
    for (const auto& token : tokenize_kjv(pair.premise)) ++counts[token];
    for (const auto& token : tokenize_kjv(pair.hypothesis)) ++counts[token];
  }
  counts[kPairClassToken] = static_cast<int64_t>(train.pairs.size());  // once per encoded pair
  vocabulary_ = Vocabulary::from_counts(
      counts, VocabularyOptions()
                  .set_min_count(config_value<int64_t>(config, "min_count"))
                  .set_max_size(config_value<int64_t>(config, "max_vocab")));
  QNOISE_CHECK(vocabulary_.contains(kPairClassToken), "pairs task: max_vocab is too small to keep ", kPairClassToken);
  train_ = encode_split(train, vocabulary_);
  for (const auto* key : {"valid_file", "test_file"}) {
    if (config_value<std::string>(config, key).empty()) continue;
    SentencePairSet set = read_sentence_pairs(path(key));
    QNOISE_CHECK(set.n_labels() <= train.n_labels(), path(key), ": has ", set.n_labels(),
                 " labels but the training file only ", train.n_labels());
    eval_.emplace_back(key == std::string("valid_file") ? "valid" : "test", encode_split(set, vocabulary_));
  }

  encoding_ = pair_encoding(config, vocabulary_);
  model_ = make_pair_classifier(config, vocabulary_.size(), train.n_labels());
  batch_size_ = config_value<int64_t>(config, "batch_size");
  eval_batch_size_ = config_value<int64_t>(config, "eval_batch_size");
  QNOISE_CHECK(batch_size_ > 0 && eval_batch_size_ > 0, "pairs task: batch sizes must be positive");
}

nlohmann::json SentencePairTask::artifacts() const {
  return {{"vocabulary", vocabulary_.to_text()}, {"label_names", label_names_}};
}

void SentencePairTask::to(const c10::Device& device) {
  device_ = device;
  model_->to(device);
}

int64_t SentencePairTask::batches_per_epoch() const {
  // Full batches only (the last partial one is dropped), unless there is less than one.
  return std::max<int64_t>(1, static_cast<int64_t>(train_.pairs.size()) / batch_size_);
}

void SentencePairTask::start_epoch(int64_t epoch) {
  // A seeded shuffle, then batches of similar lengths within windows of 64 batches (less padding:
  // a batch costs as much as its longest pair), visited in a seeded random order.
  const auto seed = config_value<uint64_t>(config_, "seed");
  std::vector<int64_t> order = epoch_permutation(static_cast<int64_t>(train_.pairs.size()), seed, epoch);
  sort_chunks_by_length(order, train_, 64 * static_cast<size_t>(batch_size_));
  batches_.clear();
  for (int64_t b = 0; b < batches_per_epoch(); ++b) {
    const int64_t start = b * batch_size_, end = std::min<int64_t>(order.size(), start + batch_size_);
    batches_.emplace_back(order.begin() + start, order.begin() + end);
  }
  const std::vector<int64_t> batch_order = epoch_permutation(batches_per_epoch(), mix_seed(seed, 1), epoch);
  std::vector<std::vector<int64_t>> shuffled;
  for (int64_t b : batch_order) shuffled.push_back(std::move(batches_[b]));
  batches_ = std::move(shuffled);
}

std::vector<std::string> SentencePairTask::eval_splits() const {
  std::vector<std::string> names;
  for (const auto& [name, split] : eval_) names.push_back(name);
  return names;
}

at::Tensor SentencePairTask::logits(const EncodedSplit& split, const std::vector<int64_t>& indices,
                                    at::Tensor& labels) {
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> pairs;
  std::vector<int64_t> label_values;
  for (int64_t i : indices) {
    pairs.push_back(split.pairs[i]);
    label_values.push_back(split.labels[i]);
  }
  const PairBatch batch = encode_pairs(pairs, encoding_);
  labels = at::tensor(label_values, at::kLong).to(device_);
  return model_->forward(batch.tokens.to(device_), batch.segments.to(device_));
}

BatchLoss SentencePairTask::train_batch(int64_t index) {
  QNOISE_CHECK(index >= 0 && index < static_cast<int64_t>(batches_.size()), "pairs task: no batch ", index);
  model_->train();
  const std::vector<int64_t>& batch = batches_[index];
  const int64_t rows = static_cast<int64_t>(batch.size());
  const auto [first, last] = shard_.range(rows);
  QNOISE_CHECK(last > first, "pairs task: a batch of ", rows, " pairs cannot be split over ", shard_.count,
               " ranks (raise --batch-size)");
  at::Tensor labels;
  const at::Tensor out = logits(train_, {batch.begin() + first, batch.begin() + last}, labels);
  return {torch::nn::functional::cross_entropy(out, labels), labels.size(0),
          static_cast<double>(last - first) / static_cast<double>(rows)};
}

void SentencePairTask::run_calibration_passes() {
  constexpr int64_t kPairs = 1024;
  model_->eval();
  torch::NoGradGuard no_grad;
  const int64_t n = std::min<int64_t>(kPairs, static_cast<int64_t>(train_.pairs.size()));
  at::Tensor labels;
  for (int64_t start = 0; start < n; start += eval_batch_size_) {
    std::vector<int64_t> indices(static_cast<size_t>(std::min(n, start + eval_batch_size_) - start));
    std::iota(indices.begin(), indices.end(), start);
    logits(train_, indices, labels);
  }
}

SplitMetrics SentencePairTask::evaluate(const std::string& split_name) {
  const EncodedSplit* split = nullptr;
  for (const auto& [name, data] : eval_)
    if (name == split_name) split = &data;
  QNOISE_CHECK(split != nullptr, "pairs task: no split '", split_name, "'");
  model_->eval();
  torch::NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(split->pairs.size());
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), int64_t{0});
  sort_chunks_by_length(order, *split, order.size());  // least padding; the sums do not care
  double loss_sum = 0;
  int64_t correct = 0;
  const auto [first, last] = shard_.range(n);
  for (int64_t start = first; start < last; start += eval_batch_size_) {
    const std::vector<int64_t> indices(order.begin() + start, order.begin() + std::min(last, start + eval_batch_size_));
    at::Tensor labels;
    const at::Tensor out = logits(*split, indices, labels);
    loss_sum += torch::nn::functional::cross_entropy(
                    out, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += out.argmax(1).eq(labels).sum().item<int64_t>();
  }
  const double count = static_cast<double>(std::max<int64_t>(1, last - first));  // an empty shard: zeros
  return {{"loss", loss_sum / count}, {"accuracy", static_cast<double>(correct) / count},
          {"pairs", static_cast<double>(last - first)}};
}

std::vector<NoiseTarget> SentencePairTask::noise_targets(double rate, int64_t block_size,
                                                         const NoiseFunction& function) const {
  // Every Linear and Embedding; the classifier's rows have d_model weights like the rest.
  return {{"*", rate, block_size, function}};
}

nlohmann::json SentencePairTask::default_ipq_plan() const { return transformer_ipq_plan(*model_, 5e-5, 300); }

}  // namespace qnoise::detail
