#include "train/image_task.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/utils.h>

#include "qnoise/efficientnet.h"
#include "qnoise/module_compression.h"
#include "train/default_plans.h"
#include "train/task_config.h"
#include "train/task_models.h"

namespace qnoise::detail {

nlohmann::json ImageTask::defaults() {
  return {{"task", "image"},
          {"data", kFashionMnistDirectory},
          {"seed", 1},
          {"batch_size", 128},
          {"eval_batch_size", 500},
          {"valid_size", 5000},  // held out of the training images, seeded
          {"train_limit", 0},    // use only this many training images (0: all); for quick runs
          {"augment", true},     // random crop (pad 2) and horizontal flip
          {"model",
           {{"arch", "efficientnet"},  // or "small-cnn"
            {"width_multiplier", 1.0},
            {"depth_multiplier", 1.0},
            {"stem_stride", 2},
            {"dropout", 0.2},
            {"channels", 16}}}};  // small-cnn only
}

ImageTask::ImageTask(const nlohmann::json& config) : config_(config) {
  // The data loader labels every image set with the Fashion-MNIST classes (artifacts()).
  model_ = make_image_model(config, static_cast<int64_t>(fashion_mnist_class_names().size()));
  is_efficientnet_ = config.at("model").at("arch") == "efficientnet";

  const auto directory = config_value<std::string>(config, "data");
  const auto seed = config_value<uint64_t>(config, "seed");
  ImageDataset all_train = load_fashion_mnist(directory, "train");
  test_ = load_fashion_mnist(directory, "test", all_train.normalization);
  const auto valid_size = config_value<int64_t>(config, "valid_size");
  QNOISE_CHECK(valid_size > 0 && valid_size < all_train.size(), "image task: valid_size must be in [1, ",
               all_train.size() - 1, "], got ", valid_size);
  // The hold-out depends on the seed only through a fixed stream, so every run of a sweep
  // validates on the same images.
  auto [held_out, rest] = all_train.random_split(valid_size, 0);
  valid_ = std::move(held_out);
  train_ = std::move(rest);
  const auto limit = config_value<int64_t>(config, "train_limit");
  QNOISE_CHECK(limit >= 0, "image task: train_limit must be >= 0, got ", limit);
  if (limit > 0) train_ = train_.first(limit);

  const auto batch_size = config_value<int64_t>(config, "batch_size");
  eval_batch_size_ = config_value<int64_t>(config, "eval_batch_size");
  QNOISE_CHECK(batch_size > 0 && eval_batch_size_ > 0, "image task: batch sizes must be positive");
  const auto augmentation =
      config_value<bool>(config, "augment") ? ImageAugmentation::standard() : ImageAugmentation{};
  // Full batches only: every epoch then has the same number of equally weighted steps.
  auto options = ImageBatchOptions::training(batch_size, seed, augmentation);
  options.drop_last = train_.size() >= batch_size;
  batches_.emplace(train_, options);
}

nlohmann::json ImageTask::artifacts() const {
  return {{"class_names", train_.class_names},
          {"normalization", {{"mean", train_.normalization.mean}, {"std", train_.normalization.std}}}};
}

void ImageTask::to(const c10::Device& device) {
  device_ = device;
  model_->to(device);
}

void ImageTask::start_epoch(int64_t epoch) {
  batches_->start_epoch(epoch);
  next_index_ = 0;
}

at::Tensor ImageTask::logits(const at::Tensor& images) { return image_classifier_forward(*model_, images); }

BatchLoss ImageTask::train_batch(int64_t index) {
  QNOISE_CHECK(index >= next_index_ && index < batches_per_epoch(), "image task: batch ", index,
               " asked for after batch ", next_index_ - 1);
  std::optional<ImageBatch> batch;
  while (next_index_ <= index) {  // draws (and discards) skipped batches: same augmentation
    batch = batches_->next();
    ++next_index_;
  }
  model_->train();
  const int64_t rows = batch->labels.size(0);
  const auto [first, last] = shard_.range(rows);
  QNOISE_CHECK(last > first, "image task: a batch of ", rows, " images cannot be split over ", shard_.count,
               " ranks (raise --batch-size)");
  const at::Tensor images = batch->images.slice(0, first, last).to(device_);
  const at::Tensor labels = batch->labels.slice(0, first, last).to(device_);
  return {torch::nn::functional::cross_entropy(logits(images), labels), labels.size(0),
          static_cast<double>(last - first) / static_cast<double>(rows)};
}

SplitMetrics ImageTask::evaluate(const std::string& split) {
  QNOISE_CHECK(split == "valid" || split == "test", "image task: no split '", split, "'");
  const ImageDataset& data = split == "valid" ? valid_ : test_;
  model_->eval();
  torch::NoGradGuard no_grad;
  double loss_sum = 0;
  int64_t correct = 0;
  const auto [first, last] = shard_.range(data.size());
  for (int64_t start = first; start < last; start += eval_batch_size_) {
    const int64_t end = std::min(last, start + eval_batch_size_);
    const at::Tensor images = data.images.slice(0, start, end).to(device_);
    const at::Tensor labels = data.labels.slice(0, start, end).to(device_);
    const at::Tensor out = logits(images);
    loss_sum += torch::nn::functional::cross_entropy(
                    out, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += out.argmax(1).eq(labels).sum().item<int64_t>();
  }
  const double n = static_cast<double>(std::max<int64_t>(1, last - first));  // an empty shard: zeros
  return {{"loss", loss_sum / n}, {"accuracy", correct / n}, {"images", static_cast<double>(last - first)}};
}

void ImageTask::run_calibration_passes() {
  constexpr int64_t kImages = 2048;
  model_->eval();
  torch::NoGradGuard no_grad;
  const int64_t n = std::min(train_.size(), kImages);
  for (int64_t start = 0; start < n; start += eval_batch_size_)
    logits(train_.images.slice(0, start, std::min(n, start + eval_batch_size_)).to(device_));
}

int64_t ImageTask::recalibrate_normalization() {
  constexpr int64_t kImages = 6400;
  // A plain average over clean passes on batches of the first images of the training set; a shard
  // takes a contiguous range of those batches.
  const int64_t n = std::min(train_.size(), kImages);
  // Not a structured binding: a C++17 lambda cannot capture one (clang refuses it).
  const std::pair<int64_t, int64_t> batches = shard_.range((n + eval_batch_size_ - 1) / eval_batch_size_);
  const int64_t first = batches.first, last = batches.second;
  reestimate_batch_norm(*model_, [&] {
    for (int64_t b = first; b < last; ++b)
      logits(train_.images.slice(0, b * eval_batch_size_, std::min(n, (b + 1) * eval_batch_size_)).to(device_));
  });
  return last - first;
}

std::vector<NoiseTarget> ImageTask::noise_targets(double rate, int64_t block_size,
                                                  const NoiseFunction& function) const {
  if (block_size == 1) return {{"*", rate, 1, function}};
  // 3x3 convolutions (the small CNN's conv1/conv2) take whole kernels; 1x1 convolutions and the
  // classifier take `block_size` input channels. EfficientNet's stem and depthwise kernels are
  // left clean (rate 0): each has at most 320 kernels, about as many as PQ's K = 256 centroids, so
  // PQ keeps them nearly exact, while dropping a whole depthwise kernel silences its channel
  // (measured, 7 epochs, batch-norm recalibrated: 86.6% test accuracy with noise on them, 89.65%
  // without; docs/training.md).
  if (is_efficientnet_)
    return {{"*.depthwise", 0.0, 9, function}, {"stem.conv", 0.0, 9, function}, {"*", rate, block_size, function}};
  return {{"conv1", rate, 9, function}, {"conv2", rate, 9, function}, {"*", rate, block_size, function}};
}

nlohmann::json ImageTask::default_ipq_plan() const { return image_ipq_plan(is_efficientnet_, 1e-3, 400); }

}  // namespace qnoise::detail
