#pragma once
// Language modelling on a WikiText-format directory (WikiText-103, or what `qnoise data kjv`
// writes) with the Transformer LM. Training windows are visited in a seeded order per epoch;
// evaluation scores every token of a split once, each window on its own (fairseq's
// tokens_per_sample evaluation without a context window).
#include <optional>

#include "qnoise/text_corpus.h"
#include "qnoise/training_task.h"
#include "qnoise/transformer_lm.h"

namespace qnoise::detail {

class LanguageModelTask : public TrainingTask {
 public:
  // A complete configuration. The vocabulary is built from the training split, the same one each
  // time for the same data and options.
  explicit LanguageModelTask(const nlohmann::json& config);
  static nlohmann::json defaults();

  std::string kind() const override { return "lm"; }
  nlohmann::json config() const override { return config_; }
  nlohmann::json artifacts() const override;
  torch::nn::Module& model() override { return *model_; }
  std::shared_ptr<torch::nn::Module> model_ptr() override { return model_.ptr(); }
  void to(const c10::Device& device) override;
  int64_t batches_per_epoch() const override { return train_batches_->size(); }
  std::string unit_name() const override { return "tokens"; }
  void set_data_shard(const DataShard& shard) override { shard_ = shard; }
  void start_epoch(int64_t epoch) override;
  BatchLoss train_batch(int64_t index) override;
  std::vector<std::string> eval_splits() const override { return {"valid", "test"}; }
  SplitMetrics evaluate(const std::string& split) override;
  nlohmann::json default_ipq_plan() const override;
  void run_calibration_passes() override;
  std::vector<std::string> recomputed_buffers() const override;
  std::string primary_metric() const override { return "ppl"; }
  std::vector<NoiseTarget> noise_targets(double rate, int64_t block_size,
                                         const NoiseFunction& function) const override;

 private:
  nlohmann::json config_;
  TextCorpus corpus_;
  TransformerLm model_{nullptr};
  c10::Device device_ = c10::kCPU;
  std::optional<LmBatcher> train_batches_;
  std::vector<int64_t> order_;
  int64_t eval_batch_size_ = 16;
  DataShard shard_;
};

}  // namespace qnoise::detail
