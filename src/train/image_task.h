#pragma once
// Image classification (Fashion-MNIST or any IDX pair in its layout) with the EfficientNet-style
// CNN or the small test CNN. Validation is a seeded hold-out of the training images.
#include <optional>

#include "qnoise/image_dataset.h"
#include "qnoise/training_task.h"

namespace qnoise::detail {

class ImageTask : public TrainingTask {
 public:
  explicit ImageTask(const nlohmann::json& config);  // a complete configuration
  static nlohmann::json defaults();

  std::string kind() const override { return "image"; }
  nlohmann::json config() const override { return config_; }
  nlohmann::json artifacts() const override;
  torch::nn::Module& model() override { return *model_; }
  std::shared_ptr<torch::nn::Module> model_ptr() override { return model_; }
  void to(const c10::Device& device) override;
  int64_t batches_per_epoch() const override { return batches_->batches_per_epoch(); }
  std::string unit_name() const override { return "images"; }
  void set_data_shard(const DataShard& shard) override { shard_ = shard; }
  void start_epoch(int64_t epoch) override;
  BatchLoss train_batch(int64_t index) override;
  std::vector<std::string> eval_splits() const override { return {"valid", "test"}; }
  SplitMetrics evaluate(const std::string& split) override;
  nlohmann::json default_ipq_plan() const override;
  void run_calibration_passes() override;
  std::string primary_metric() const override { return "accuracy"; }
  int64_t recalibrate_normalization() override;
  int64_t default_pq_block_size() const override { return 4; }
  std::vector<NoiseTarget> noise_targets(double rate, int64_t block_size,
                                         const NoiseFunction& function) const override;

 private:
  at::Tensor logits(const at::Tensor& images);

  nlohmann::json config_;
  std::shared_ptr<torch::nn::Module> model_;
  bool is_efficientnet_ = true;
  c10::Device device_ = c10::kCPU;
  ImageDataset train_, valid_, test_;
  std::optional<ImageBatches> batches_;
  int64_t next_index_ = 0;
  int64_t eval_batch_size_ = 500;
  DataShard shard_;
};

}  // namespace qnoise::detail
