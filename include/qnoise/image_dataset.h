#pragma once
// Labelled image sets (Fashion-MNIST and any uint8 IDX pair) and the batches a trainer draws from
// them: seeded shuffling, and light augmentation (random crop with padding, horizontal flip)
// applied per batch on the fly, vectorised over the batch.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace qnoise {

inline constexpr const char* kFashionMnistDirectory = "/usr/share/datasets/fashion-mnist";
inline constexpr int64_t kFashionMnistSide = 28;

// Pixel statistics in [0, 1] units: images are stored as (pixel / 255 - mean) / std.
struct ImageNormalization {
  double mean = 0.0;
  double std = 1.0;
  // The stored value of a black (0) pixel: what padding fills with.
  double black() const { return -mean / std; }
};

struct ImageDataset {
  at::Tensor images;  // float32 [n, channels, rows, cols], normalised
  at::Tensor labels;  // int64 [n]
  ImageNormalization normalization;  // of the training set, for every split
  std::vector<std::string> class_names;

  int64_t size() const { return labels.size(0); }
  // The examples at `indices` (int64 [m]), in that order; the statistics stay those of train.
  ImageDataset subset(const at::Tensor& indices) const;
  // The first `count` examples (all when count >= size()).
  ImageDataset first(int64_t count) const;
  // `count` examples chosen at random without replacement, seeded, in their original order.
  ImageDataset random_subset(int64_t count, uint64_t seed) const;
  // A seeded random split into (`count` examples, the rest), e.g. to hold out a validation set.
  std::pair<ImageDataset, ImageDataset> random_split(int64_t count, uint64_t seed) const;
};

// Builds a data set from raw uint8 images [n, rows, cols] or [n, channels, rows, cols] and integer
// labels [n]. Without `normalization`, the statistics of these images are used (a training set).
// Throws qnoise::Error when shapes or counts disagree.
ImageDataset make_image_dataset(const at::Tensor& raw_images, const at::Tensor& raw_labels,
                                std::optional<ImageNormalization> normalization = std::nullopt,
                                std::vector<std::string> class_names = {});

// The ten Fashion-MNIST classes, by label.
const std::vector<std::string>& fashion_mnist_class_names();

// Reads split "train" or "test" ({train,t10k}-{images-idx3,labels-idx1}-ubyte, with or without
// .gz) from `directory`. Normalises with `train_normalization` when given; otherwise with the
// statistics of the training images (for "test" this reads them too: pass train's to save that).
// Throws qnoise::Error naming the file when a file is missing or corrupt, counts disagree, an
// image is not 28x28 or a label is not below 10.
ImageDataset load_fashion_mnist(const std::string& directory = kFashionMnistDirectory,
                                const std::string& split = "train",
                                std::optional<ImageNormalization> train_normalization = std::nullopt);

// Per-image augmentation of a batch [b, c, rows, cols]: image i is padded by `padding` on every
// side with `fill`, cropped back to rows x cols at offset (offset_y[i], offset_x[i]) in
// [0, 2 * padding], then mirrored left-right where flip[i]. Offsets int64 [b], flip bool [b].
// Output pixel (y, x) of an unflipped image is input pixel (y + offset_y - padding,
// x + offset_x - padding), or `fill` outside it.
at::Tensor crop_and_flip(const at::Tensor& images, const at::Tensor& offset_y,
                         const at::Tensor& offset_x, const at::Tensor& flip, int64_t padding,
                         double fill);

struct ImageAugmentation {
  int64_t crop_padding = 0;      // 0: no random crop
  bool horizontal_flip = false;  // mirror with probability 0.5
  bool enabled() const { return crop_padding > 0 || horizontal_flip; }
  // The usual light augmentation for 28x28 images: pad 2, random crop, random flip.
  static ImageAugmentation standard() { return {2, true}; }
};

struct ImageBatchOptions {
  int64_t batch_size = 128;
  bool shuffle = false;
  bool drop_last = false;  // drop a last, smaller batch
  ImageAugmentation augmentation;
  uint64_t seed = 0;  // with the epoch number, fixes the order and the augmentation draws

  // Shuffled and augmented; every example once per epoch.
  static ImageBatchOptions training(int64_t batch_size, uint64_t seed,
                                    ImageAugmentation augmentation = ImageAugmentation::standard()) {
    return {batch_size, true, false, augmentation, seed};
  }
  // In order, unaugmented, all examples.
  static ImageBatchOptions evaluation(int64_t batch_size) { return {batch_size, false, false, {}, 0}; }
};

struct ImageBatch {
  at::Tensor images;   // float32 [b, channels, rows, cols]
  at::Tensor labels;   // int64 [b]
  at::Tensor indices;  // int64 [b]: positions of these examples in the data set
};

// Yields the batches of one epoch at a time:
//   ImageBatches batches(train, ImageBatchOptions::training(128, seed));
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     batches.start_epoch(epoch);
//     while (auto batch = batches.next()) { ... batch->images, batch->labels ... }
//   }
// The epoch's order and draws depend only on (seed, epoch), so a resumed run sees the same data.
// Keeps a reference to `data`, which must outlive it.
class ImageBatches {
 public:
  ImageBatches(const ImageDataset& data, ImageBatchOptions options);

  void start_epoch(int64_t epoch);
  std::optional<ImageBatch> next();  // nullopt at the end of the epoch
  int64_t batches_per_epoch() const;
  const ImageBatchOptions& options() const { return options_; }

 private:
  ImageBatch augment(ImageBatch batch);

  const ImageDataset& data_;
  ImageBatchOptions options_;
  std::vector<int64_t> order_;
  int64_t position_ = 0;
  std::mt19937_64 engine_;
};

}  // namespace qnoise
