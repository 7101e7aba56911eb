// Image data sets and their batches. Random draws use std::mt19937_64 and the portable helpers of
// seeded_order.h, so the same seed gives the same batches everywhere.
#include "qnoise/image_dataset.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "qnoise/error.h"
#include "qnoise/idx_file.h"
#include "qnoise/seeded_order.h"

namespace qnoise {
namespace {

constexpr int64_t kFashionMnistClasses = 10;

at::Tensor to_index_tensor(const std::vector<int64_t>& indices) {
  return at::tensor(indices, at::kLong);
}

// Exact mean and std of uint8 pixels in [0, 1] units, from a histogram: no float copy needed.
ImageNormalization measure_normalization(const at::Tensor& raw_images) {
  const at::Tensor pixels = raw_images.contiguous();
  const uint8_t* data = pixels.data_ptr<uint8_t>();
  std::array<uint64_t, 256> counts{};
  const int64_t n = pixels.numel();
  for (int64_t i = 0; i < n; ++i) ++counts[data[i]];
  double sum = 0, sum_squares = 0;
  for (int v = 0; v < 256; ++v) {
    const double value = v / 255.0;
    sum += counts[v] * value;
    sum_squares += counts[v] * value * value;
  }
  ImageNormalization stats;
  if (n == 0) return stats;
  stats.mean = sum / n;
  const double variance = std::max(0.0, sum_squares / n - stats.mean * stats.mean);
  // Constant images would divide by zero: leave their scale alone.
  stats.std = variance > 1e-12 ? std::sqrt(variance) : 1.0;
  return stats;
}

std::string existing_idx_file(const std::string& directory, const std::string& stem) {
  const auto base = std::filesystem::path(directory) / stem;
  for (const auto& candidate : {base.string() + ".gz", base.string()}) {
    if (std::filesystem::exists(candidate)) return candidate;
  }
  QNOISE_CHECK(false, "Fashion-MNIST file '", base.string(), ".gz' (or without .gz) not found",
               " (Debian package dataset-fashion-mnist installs them in ", kFashionMnistDirectory,
               ")");
  return {};
}

void check_fashion_mnist_labels(const at::Tensor& labels, const std::string& path) {
  const at::Tensor bad = (labels >= kFashionMnistClasses).nonzero();
  if (bad.size(0) == 0) return;
  const int64_t index = bad[0][0].item<int64_t>();
  QNOISE_CHECK(false, "label file '", path, "': label ", labels[index].item<int64_t>(),
               " at index ", index, " is not below ", kFashionMnistClasses);
}

}  // namespace

ImageDataset make_image_dataset(const at::Tensor& raw_images, const at::Tensor& raw_labels,
                                std::optional<ImageNormalization> normalization,
                                std::vector<std::string> class_names) {
  QNOISE_CHECK(raw_images.scalar_type() == at::kByte, "images must be uint8, got ",
               raw_images.scalar_type());
  QNOISE_CHECK(raw_images.dim() == 3 || raw_images.dim() == 4,
               "images must be [n, rows, cols] or [n, channels, rows, cols], got ",
               raw_images.sizes());
  QNOISE_CHECK(raw_labels.dim() == 1 && !at::isFloatingType(raw_labels.scalar_type()),
               "labels must be integers [n], got ", raw_labels.scalar_type(), " ",
               raw_labels.sizes());
  QNOISE_CHECK(raw_images.size(0) == raw_labels.size(0), raw_images.size(0), " images but ",
               raw_labels.size(0), " labels");
  ImageDataset data;
  data.normalization = normalization ? *normalization : measure_normalization(raw_images);
  QNOISE_CHECK(data.normalization.std > 0, "normalization std must be positive, got ",
               data.normalization.std);
  const double scale = 1.0 / (255.0 * data.normalization.std);
  at::Tensor images = raw_images.to(at::kFloat);
  images.mul_(scale).sub_(data.normalization.mean / data.normalization.std);
  data.images = raw_images.dim() == 3 ? images.unsqueeze(1) : images;
  data.labels = raw_labels.to(at::kLong);
  data.class_names = std::move(class_names);
  return data;
}

ImageDataset ImageDataset::subset(const at::Tensor& indices) const {
  QNOISE_CHECK(indices.dim() == 1 && indices.scalar_type() == at::kLong,
               "subset indices must be int64 [m], got ", indices.scalar_type(), " ",
               indices.sizes());
  if (indices.numel() > 0) {
    QNOISE_CHECK(indices.min().item<int64_t>() >= 0 && indices.max().item<int64_t>() < size(),
                 "subset indices must lie in [0, ", size(), ")");
  }
  ImageDataset picked = *this;
  picked.images = images.index_select(0, indices);
  picked.labels = labels.index_select(0, indices);
  return picked;
}

ImageDataset ImageDataset::first(int64_t count) const {
  QNOISE_CHECK(count >= 0, "subset size must be non-negative, got ", count);
  ImageDataset picked = *this;
  picked.images = images.narrow(0, 0, std::min(count, size()));
  picked.labels = labels.narrow(0, 0, std::min(count, size()));
  return picked;
}

ImageDataset ImageDataset::random_subset(int64_t count, uint64_t seed) const {
  return random_split(count, seed).first;
}

std::pair<ImageDataset, ImageDataset> ImageDataset::random_split(int64_t count,
                                                                 uint64_t seed) const {
  QNOISE_CHECK(count >= 0 && count <= size(), "cannot take ", count, " of ", size(), " examples");
  std::mt19937_64 engine(mix_seed(seed, 0));
  std::vector<int64_t> order = seeded_permutation(size(), engine);
  // Sorted, so subsets keep the data set's order (and stay cache friendly).
  std::sort(order.begin(), order.begin() + count);
  std::sort(order.begin() + count, order.end());
  std::vector<int64_t> taken(order.begin(), order.begin() + count);
  std::vector<int64_t> rest(order.begin() + count, order.end());
  return {subset(to_index_tensor(taken)), subset(to_index_tensor(rest))};
}

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                                 "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

ImageDataset load_fashion_mnist(const std::string& directory, const std::string& split,
                                std::optional<ImageNormalization> train_normalization) {
  QNOISE_CHECK(split == "train" || split == "test", "Fashion-MNIST split must be train or test, got '",
               split, "'");
  const std::string prefix = split == "train" ? "train" : "t10k";
  const std::string images_path = existing_idx_file(directory, prefix + "-images-idx3-ubyte");
  const std::string labels_path = existing_idx_file(directory, prefix + "-labels-idx1-ubyte");
  const at::Tensor raw_images = read_idx_images(images_path);
  QNOISE_CHECK(raw_images.size(1) == kFashionMnistSide && raw_images.size(2) == kFashionMnistSide,
               "image file '", images_path, "': images are ", raw_images.size(1), "x",
               raw_images.size(2), ", Fashion-MNIST's are 28x28");
  const at::Tensor raw_labels = read_idx_labels(labels_path);
  QNOISE_CHECK(raw_images.size(0) == raw_labels.size(0), "image file '", images_path, "' has ",
               raw_images.size(0), " images but label file '", labels_path, "' has ",
               raw_labels.size(0), " labels");
  check_fashion_mnist_labels(raw_labels, labels_path);
  if (!train_normalization && split != "train") {
    train_normalization =
        measure_normalization(read_idx_images(existing_idx_file(directory, "train-images-idx3-ubyte")));
  }
  return make_image_dataset(raw_images, raw_labels, train_normalization,
                            fashion_mnist_class_names());
}

at::Tensor crop_and_flip(const at::Tensor& images, const at::Tensor& offset_y,
                         const at::Tensor& offset_x, const at::Tensor& flip, int64_t padding,
                         double fill) {
  QNOISE_CHECK(images.dim() == 4, "images must be [b, channels, rows, cols], got ", images.sizes());
  const int64_t b = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  QNOISE_CHECK(padding >= 0, "crop padding must be non-negative, got ", padding);
  for (const at::Tensor* offsets : {&offset_y, &offset_x}) {
    QNOISE_CHECK(offsets->dim() == 1 && offsets->size(0) == b, "need one crop offset per image");
    QNOISE_CHECK(b == 0 || (offsets->min().item<int64_t>() >= 0 &&
                            offsets->max().item<int64_t>() <= 2 * padding),
                 "crop offsets must lie in [0, ", 2 * padding, "]");
  }
  QNOISE_CHECK(flip.dim() == 1 && flip.size(0) == b, "need one flip flag per image");
  const auto long_options = at::TensorOptions().dtype(at::kLong);
  const at::Tensor padded =
      padding > 0 ? at::constant_pad_nd(images, {padding, padding, padding, padding}, fill) : images;
  // Source row and column (in padded coordinates) of every output pixel; a flip reverses the
  // columns, so crop and flip are one gather per axis.
  const at::Tensor rows = offset_y.to(at::kLong).view({b, 1}) + at::arange(h, long_options).view({1, h});
  const at::Tensor forward = at::arange(w, long_options).view({1, w});
  const at::Tensor columns =
      offset_x.to(at::kLong).view({b, 1}) + at::where(flip.to(at::kBool).view({b, 1}), forward.flip(1), forward);
  const at::Tensor picked_rows =
      padded.gather(2, rows.view({b, 1, h, 1}).expand({b, c, h, padded.size(3)}));
  return picked_rows.gather(3, columns.view({b, 1, 1, w}).expand({b, c, h, w}));
}

ImageBatches::ImageBatches(const ImageDataset& data, ImageBatchOptions options)
    : data_(data), options_(options) {
  QNOISE_CHECK(options_.batch_size > 0, "batch size must be positive, got ", options_.batch_size);
  QNOISE_CHECK(options_.augmentation.crop_padding >= 0, "crop padding must be non-negative, got ",
               options_.augmentation.crop_padding);
  start_epoch(0);
}

void ImageBatches::start_epoch(int64_t epoch) {
  engine_.seed(mix_seed(options_.seed, static_cast<uint64_t>(epoch)));
  if (options_.shuffle) {
    order_ = seeded_permutation(data_.size(), engine_);
  } else {
    order_.resize(data_.size());
    std::iota(order_.begin(), order_.end(), int64_t{0});
  }
  position_ = 0;
}

int64_t ImageBatches::batches_per_epoch() const {
  const int64_t n = data_.size(), size = options_.batch_size;
  return options_.drop_last ? n / size : (n + size - 1) / size;
}

std::optional<ImageBatch> ImageBatches::next() {
  const int64_t remaining = data_.size() - position_;
  if (remaining <= 0 || (options_.drop_last && remaining < options_.batch_size)) return std::nullopt;
  const int64_t count = std::min(remaining, options_.batch_size);
  ImageBatch batch;
  batch.indices = at::tensor(at::ArrayRef<int64_t>(order_.data() + position_, count), at::kLong);
  if (options_.shuffle) {
    batch.images = data_.images.index_select(0, batch.indices);
    batch.labels = data_.labels.index_select(0, batch.indices);
  } else {  // in order: views, no copy
    batch.images = data_.images.narrow(0, position_, count);
    batch.labels = data_.labels.narrow(0, position_, count);
  }
  position_ += count;
  return options_.augmentation.enabled() ? augment(std::move(batch)) : batch;
}

ImageBatch ImageBatches::augment(ImageBatch batch) {
  const int64_t b = batch.images.size(0);
  const int64_t padding = options_.augmentation.crop_padding;
  at::Tensor offset_y = at::zeros({b}, at::kLong), offset_x = at::zeros({b}, at::kLong);
  at::Tensor flip = at::zeros({b}, at::kBool);
  auto dy = offset_y.accessor<int64_t, 1>(), dx = offset_x.accessor<int64_t, 1>();
  auto mirrored = flip.accessor<bool, 1>();
  for (int64_t i = 0; i < b; ++i) {
    if (padding > 0) {
      dy[i] = uniform_below(engine_, 2 * padding + 1);
      dx[i] = uniform_below(engine_, 2 * padding + 1);
    }
    if (options_.augmentation.horizontal_flip) mirrored[i] = (engine_() >> 63) != 0;
  }
  batch.images = crop_and_flip(batch.images, offset_y, offset_x, flip, padding,
                               data_.normalization.black());
  return batch;
}

}  // namespace qnoise
