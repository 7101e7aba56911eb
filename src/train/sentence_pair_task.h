#pragma once
// Sentence-pair classification (GLUE/MNLI-style TSV: MNLI, the KJV next-verse pairs of
// `qnoise data kjv-pairs`) with the RoBERTa-style encoder classifier. Sentences are split into
// words and punctuation; the vocabulary comes from the training pairs.
#include "qnoise/encoder_classifier.h"
#include "qnoise/sentence_pairs.h"
#include "qnoise/training_task.h"
#include "qnoise/vocabulary.h"

namespace qnoise::detail {

class SentencePairTask : public TrainingTask {
 public:
  explicit SentencePairTask(const nlohmann::json& config);  // a complete configuration
  static nlohmann::json defaults();

  std::string kind() const override { return "pairs"; }
  nlohmann::json config() const override { return config_; }
  nlohmann::json artifacts() const override;
  torch::nn::Module& model() override { return *model_; }
  std::shared_ptr<torch::nn::Module> model_ptr() override { return model_.ptr(); }
  void to(const c10::Device& device) override;
  int64_t batches_per_epoch() const override;
  std::string unit_name() const override { return "pairs"; }
  void set_data_shard(const DataShard& shard) override { shard_ = shard; }
  void start_epoch(int64_t epoch) override;
  BatchLoss train_batch(int64_t index) override;
  std::vector<std::string> eval_splits() const override;
  SplitMetrics evaluate(const std::string& split) override;
  nlohmann::json default_ipq_plan() const override;
  void run_calibration_passes() override;
  std::string primary_metric() const override { return "accuracy"; }
  std::vector<NoiseTarget> noise_targets(double rate, int64_t block_size,
                                         const NoiseFunction& function) const override;

  // A split's pairs as token ids, with labels.
  struct EncodedSplit {
    std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> pairs;
    std::vector<int64_t> labels;
  };

 private:
  at::Tensor logits(const EncodedSplit& split, const std::vector<int64_t>& indices, at::Tensor& labels);

  nlohmann::json config_;
  Vocabulary vocabulary_;
  std::vector<std::string> label_names_;
  PairEncoding encoding_;
  EncoderClassifier model_{nullptr};
  c10::Device device_ = c10::kCPU;
  EncodedSplit train_;
  std::vector<std::pair<std::string, EncodedSplit>> eval_;  // (name, split)
  std::vector<std::vector<int64_t>> batches_;  // this epoch's batches of pair indices
  int64_t batch_size_ = 32, eval_batch_size_ = 64;
  DataShard shard_;
};

}  // namespace qnoise::detail
