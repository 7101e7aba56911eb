#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "qnoise/error.h"
#include "qnoise/image_dataset.h"

using qnoise::ImageBatch;
using qnoise::ImageBatches;
using qnoise::ImageBatchOptions;
using qnoise::ImageDataset;

namespace {

constexpr int64_t kSide = 28;

// Writes a uint8 tensor as an IDX file (gzip-compressed when asked).
void write_idx(const std::string& path, const torch::Tensor& values, bool gzip) {
  std::string bytes = {0, 0, 8, char(values.dim())};
  for (int64_t dim : values.sizes()) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(char(uint32_t(dim) >> shift));
  }
  const auto data = values.contiguous();
  bytes.append(reinterpret_cast<const char*>(data.data_ptr<uint8_t>()), size_t(data.numel()));
  if (gzip) {
    gzFile file = gzopen(path.c_str(), "wb");
    ASSERT_NE(file, nullptr);
    ASSERT_EQ(gzwrite(file, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
    gzclose(file);
  } else {
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  }
}

torch::Tensor random_pixels(int64_t n, int64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, {n, kSide, kSide}, torch::kByte);
}

// A fresh directory with a small Fashion-MNIST-shaped train and test split.
std::string write_fashion_directory(const std::string& name, bool gzip, int64_t train_count = 6,
                                    int64_t test_count = 4) {
  const std::string directory = testing::TempDir() + "qnoise_fashion_" + name;
  std::filesystem::remove_all(directory);
  std::filesystem::create_directories(directory);
  const std::string suffix = gzip ? ".gz" : "";
  write_idx(directory + "/train-images-idx3-ubyte" + suffix, random_pixels(train_count, 1), gzip);
  write_idx(directory + "/train-labels-idx1-ubyte" + suffix,
            torch::arange(train_count).remainder(10).to(torch::kByte), gzip);
  write_idx(directory + "/t10k-images-idx3-ubyte" + suffix, random_pixels(test_count, 2), gzip);
  write_idx(directory + "/t10k-labels-idx1-ubyte" + suffix,
            torch::arange(test_count).remainder(10).to(torch::kByte), gzip);
  return directory;
}

void expect_load_error(const std::string& directory, const std::string& split,
                       const std::string& fragment) {
  try {
    qnoise::load_fashion_mnist(directory, split);
    ADD_FAILURE() << "no error loading " << directory;
  } catch (const qnoise::Error& error) {
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
  }
}

// A data set of n distinct random images whose labels are their indices.
ImageDataset indexed_dataset(int64_t n) {
  return qnoise::make_image_dataset(random_pixels(n, 3), torch::arange(n),
                                    qnoise::ImageNormalization{0.0, 1.0 / 255.0});
}

std::vector<ImageBatch> one_epoch(ImageBatches& batches, int64_t epoch) {
  batches.start_epoch(epoch);
  std::vector<qnoise::ImageBatch> all;
  while (auto batch = batches.next()) all.push_back(*batch);
  return all;
}

const ImageDataset* real_fashion_train() {
  static const std::optional<ImageDataset> train = []() -> std::optional<ImageDataset> {
    if (!std::filesystem::exists(std::string(qnoise::kFashionMnistDirectory) +
                                 "/train-images-idx3-ubyte.gz")) {
      return std::nullopt;
    }
    const auto start = std::chrono::steady_clock::now();
    auto data = qnoise::load_fashion_mnist();
    std::cout << "[ timing ] load Fashion-MNIST train (60k): "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
              << " s\n";
    return data;
  }();
  return train ? &*train : nullptr;
}

}  // namespace

TEST(ImageDataset, LoadsTrainAndTestWithTheTrainStatistics) {
  for (bool gzip : {true, false}) {
    const std::string directory = write_fashion_directory(gzip ? "gz" : "plain", gzip);
    const auto train = qnoise::load_fashion_mnist(directory, "train");
    const auto raw = random_pixels(6, 1).to(torch::kDouble) / 255.0;
    EXPECT_NEAR(train.normalization.mean, raw.mean().item<double>(), 1e-12);
    EXPECT_NEAR(train.normalization.std, raw.std(/*unbiased=*/false).item<double>(), 1e-12);
    const auto expected = ((raw - train.normalization.mean) / train.normalization.std).to(torch::kFloat);
    EXPECT_EQ(train.images.sizes(), (std::vector<int64_t>{6, 1, kSide, kSide}));
    EXPECT_TRUE(torch::allclose(train.images.squeeze(1), expected, 1e-5, 1e-5));
    EXPECT_TRUE(torch::equal(train.labels, torch::arange(6)));
    EXPECT_EQ(train.class_names.at(9), "Ankle boot");

    const auto test = qnoise::load_fashion_mnist(directory, "test");
    EXPECT_EQ(test.size(), 4);
    EXPECT_DOUBLE_EQ(test.normalization.mean, train.normalization.mean);
    EXPECT_DOUBLE_EQ(test.normalization.std, train.normalization.std);
  }
}

TEST(ImageDataset, BadDirectoriesAreErrorsNamingTheFile) {
  expect_load_error(testing::TempDir() + "qnoise_no_such_dir", "train", "train-images-idx3-ubyte.gz");
  const std::string good = write_fashion_directory("bad_split", true);
  expect_load_error(good, "valid", "split must be train or test");

  const std::string mismatch = write_fashion_directory("mismatch", true);
  write_idx(mismatch + "/t10k-labels-idx1-ubyte.gz", torch::zeros({3}, torch::kByte), true);
  expect_load_error(mismatch, "test", "t10k-labels-idx1-ubyte.gz' has 3 labels");

  const std::string out_of_range = write_fashion_directory("out_of_range", false);
  write_idx(out_of_range + "/train-labels-idx1-ubyte",
            torch::tensor({1, 2, 10, 0, 0, 0}, torch::kLong).to(torch::kByte), false);
  expect_load_error(out_of_range, "train", "train-labels-idx1-ubyte': label 10 at index 2");

  const std::string wrong_size = write_fashion_directory("wrong_size", true);
  write_idx(wrong_size + "/train-images-idx3-ubyte.gz", torch::zeros({6, 28, 27}, torch::kByte), true);
  expect_load_error(wrong_size, "train", "28x27");
}

TEST(ImageDataset, FirstRandomSubsetAndSplit) {
  const auto data = indexed_dataset(50);
  const auto first = data.first(7);
  EXPECT_TRUE(torch::equal(first.labels, torch::arange(7)));
  EXPECT_TRUE(torch::equal(first.images, data.images.narrow(0, 0, 7)));
  EXPECT_EQ(data.first(1000).size(), 50);

  const auto picked = data.random_subset(10, 42);
  EXPECT_TRUE(torch::equal(picked.labels, data.random_subset(10, 42).labels));
  EXPECT_FALSE(torch::equal(picked.labels, data.random_subset(10, 43).labels));
  EXPECT_TRUE(torch::equal(std::get<0>(picked.labels.sort()), picked.labels));  // original order
  EXPECT_TRUE((picked.labels.slice(0, 1) > picked.labels.slice(0, 0, -1)).all().item<bool>());
  EXPECT_TRUE(torch::equal(picked.images, data.images.index_select(0, picked.labels)));

  const auto [held_out, rest] = data.random_split(10, 42);
  EXPECT_TRUE(torch::equal(held_out.labels, picked.labels));
  EXPECT_TRUE(torch::equal(std::get<0>(torch::cat({held_out.labels, rest.labels}).sort()),
                           torch::arange(50)));
  EXPECT_THROW(data.random_subset(51, 0), qnoise::Error);
}

TEST(ImageAugmentation, FlipIsAnExactMirror) {
  const auto images = indexed_dataset(3).images;
  const auto none = torch::zeros({3}, torch::kLong);
  const auto flipped = qnoise::crop_and_flip(images, none, none, torch::ones({3}, torch::kBool), 0, 0.0);
  EXPECT_TRUE(torch::equal(flipped, images.flip(3)));
  // Centred crop (offset = padding) with flip: still the exact mirror.
  const auto centre = torch::full({3}, 2, torch::kLong);
  const auto mixed = torch::tensor({true, false, true});
  const auto cropped = qnoise::crop_and_flip(images, centre, centre, mixed, 2, -7.0);
  EXPECT_TRUE(torch::equal(cropped[0], images[0].flip(2)));
  EXPECT_TRUE(torch::equal(cropped[1], images[1]));
}

TEST(ImageAugmentation, CropShiftsContentByTheOffset) {
  const auto image = indexed_dataset(1).images;  // [1, 1, 28, 28]
  const int64_t padding = 2;
  const double fill = -7.0;
  for (int64_t dy = 0; dy <= 2 * padding; ++dy) {
    for (int64_t dx = 0; dx <= 2 * padding; ++dx) {
      const auto out = qnoise::crop_and_flip(image, torch::tensor({dy}), torch::tensor({dx}),
                                             torch::tensor({false}), padding, fill);
      // Output (y, x) is input (y + dy - padding, x + dx - padding), or fill outside.
      auto expected = torch::full({kSide, kSide}, fill, torch::kFloat);
      const int64_t sy = dy - padding, sx = dx - padding;
      const int64_t y0 = std::max<int64_t>(0, -sy), x0 = std::max<int64_t>(0, -sx);
      const int64_t height = kSide - std::abs(sy), width = kSide - std::abs(sx);
      expected.narrow(0, y0, height).narrow(1, x0, width)
          .copy_(image[0][0].narrow(0, y0 + sy, height).narrow(1, x0 + sx, width));
      EXPECT_TRUE(torch::equal(out[0][0], expected)) << "offset " << dy << "," << dx;
    }
  }
}

TEST(ImageBatches, EveryExampleOncePerEpochAndSeedsRepeat) {
  const auto data = indexed_dataset(300);
  ImageBatches batches(data, ImageBatchOptions::training(64, 7));
  EXPECT_EQ(batches.batches_per_epoch(), 5);
  const auto epoch0 = one_epoch(batches, 0);
  ASSERT_EQ(epoch0.size(), 5u);
  EXPECT_EQ(epoch0.back().labels.size(0), 300 - 4 * 64);
  std::vector<torch::Tensor> labels;
  for (const auto& batch : epoch0) {
    EXPECT_TRUE(torch::equal(batch.labels, batch.indices));
    labels.push_back(batch.labels);
  }
  const auto all = torch::cat(labels);
  EXPECT_FALSE(torch::equal(all, torch::arange(300)));  // shuffled
  EXPECT_TRUE(torch::equal(std::get<0>(all.sort()), torch::arange(300)));

  ImageBatches again(data, ImageBatchOptions::training(64, 7));
  const auto repeat = one_epoch(again, 0);
  for (size_t i = 0; i < epoch0.size(); ++i) {
    EXPECT_TRUE(torch::equal(repeat[i].labels, epoch0[i].labels));
    EXPECT_TRUE(torch::equal(repeat[i].images, epoch0[i].images));
  }
  EXPECT_FALSE(torch::equal(one_epoch(batches, 1)[0].labels, epoch0[0].labels));
  ImageBatches other_seed(data, ImageBatchOptions::training(64, 8));
  EXPECT_FALSE(torch::equal(one_epoch(other_seed, 0)[0].labels, epoch0[0].labels));
}

TEST(ImageBatches, AugmentedImagesAreShiftedOrMirroredSources) {
  const auto data = indexed_dataset(64);
  ImageBatches batches(data, ImageBatchOptions::training(64, 3));
  const auto batch = *batches.next();
  std::set<std::pair<int64_t, int64_t>> offsets_seen;
  int flips = 0;
  for (int64_t i = 0; i < 64; ++i) {
    const auto source = data.images[batch.indices[i].item<int64_t>()].unsqueeze(0);
    bool matched = false;
    for (int64_t candidate = 0; candidate < 50 && !matched; ++candidate) {
      const int64_t dy = candidate % 5, dx = (candidate / 5) % 5;
      const bool flip = candidate >= 25;
      const auto expected = qnoise::crop_and_flip(source, torch::tensor({dy}), torch::tensor({dx}),
                                                  torch::tensor({flip}), 2, data.normalization.black());
      if (torch::equal(expected[0], batch.images[i])) {
        matched = true;
        offsets_seen.insert({dy, dx});
        flips += flip;
      }
    }
    EXPECT_TRUE(matched) << "image " << i << " is no crop or flip of its source";
  }
  EXPECT_GT(offsets_seen.size(), 10u);
  EXPECT_GT(flips, 16);
  EXPECT_LT(flips, 48);
}

TEST(ImageBatches, EvaluationIsInOrderAndUnaugmented) {
  const auto data = indexed_dataset(100);
  ImageBatches batches(data, ImageBatchOptions::evaluation(32));
  const auto epoch = one_epoch(batches, 0);
  ASSERT_EQ(epoch.size(), 4u);
  for (size_t i = 0; i < epoch.size(); ++i) {
    const int64_t count = i < 3 ? 32 : 4;
    EXPECT_TRUE(torch::equal(epoch[i].images, data.images.narrow(0, 32 * i, count)));
    EXPECT_TRUE(torch::equal(epoch[i].labels, torch::arange(32 * int64_t(i), 32 * int64_t(i) + count)));
  }
  auto options = ImageBatchOptions::evaluation(32);
  options.drop_last = true;
  ImageBatches dropping(data, options);
  EXPECT_EQ(dropping.batches_per_epoch(), 3);
  EXPECT_EQ(one_epoch(dropping, 0).size(), 3u);
}

TEST(ImageDataset, RealFashionMnist) {
  const ImageDataset* train = real_fashion_train();
  if (train == nullptr) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  EXPECT_EQ(train->images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(train->labels.sizes(), (std::vector<int64_t>{60000}));
  EXPECT_EQ(train->labels.min().item<int64_t>(), 0);
  EXPECT_EQ(train->labels.max().item<int64_t>(), 9);
  EXPECT_NEAR(train->images.mean().item<double>(), 0.0, 1e-3);
  EXPECT_NEAR(train->images.std().item<double>(), 1.0, 1e-3);
  EXPECT_NEAR(train->normalization.mean, 0.2860, 1e-3);  // Fashion-MNIST's published statistics
  EXPECT_NEAR(train->normalization.std, 0.3530, 1e-3);

  const auto test = qnoise::load_fashion_mnist(qnoise::kFashionMnistDirectory, "test",
                                               train->normalization);
  EXPECT_EQ(test.images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(test.labels.max().item<int64_t>(), 9);
  EXPECT_EQ(test.normalization.mean, train->normalization.mean);
  EXPECT_NEAR(test.images.mean().item<double>(), 0.0, 0.05);  // train statistics, not its own
}

// Speed is a benchmark's business, not a test's: this checks the real augmented epoch is whole.
TEST(ImageBatches, RealAugmentedEpochVisitsEveryImageOnce) {
  const ImageDataset* train = real_fashion_train();
  if (train == nullptr) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  ImageBatches batches(*train, ImageBatchOptions::training(128, 1));
  std::vector<torch::Tensor> indices;
  while (auto batch = batches.next()) indices.push_back(batch->indices);
  auto seen = torch::cat(indices);
  EXPECT_EQ(seen.numel(), 60000);
  EXPECT_EQ(std::get<0>(at::_unique(seen)).numel(), 60000);
}
