#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qnoise/compressed_weight.h"
#include "qnoise/error.h"
#include "qnoise/product_quantizer.h"

TEST(CompressedWeight, FloatSchemesKeepTheValues) {
  const auto w = torch::randn({6, 10});
  const auto f32 = qnoise::compress_float(w, qnoise::WeightScheme::Float32);
  EXPECT_TRUE(torch::equal(f32.decode(), w));
  EXPECT_EQ(f32.stored_bytes(), 240);
  const auto f16 = qnoise::compress_float(w, qnoise::WeightScheme::Float16);
  EXPECT_TRUE(torch::equal(f16.decode(), w.to(torch::kHalf).to(torch::kFloat)));
  EXPECT_DOUBLE_EQ(f16.bits_per_weight(), 16.0);
}

TEST(CompressedWeight, Int8AndInt4SizesAndErrorBounds) {
  torch::manual_seed(0);
  const auto w = torch::randn({16, 33});  // odd numel: the last int4 byte holds one code
  for (int bits : {8, 4}) {
    const auto c = qnoise::compress_scalar(w, bits);
    const int64_t code_bytes = bits == 8 ? 16 * 33 : (16 * 33 + 1) / 2;
    EXPECT_EQ(c.stored_bytes(), code_bytes + 16 * 4 + 16);
    const auto restored = c.decode();
    ASSERT_EQ(restored.sizes(), w.sizes());
    // Min-max per channel: every weight is within half a step of its channel's grid.
    const auto step = (std::get<0>(w.max(1)).clamp_min(0) - std::get<0>(w.min(1)).clamp_max(0)) / ((1 << bits) - 1);
    EXPECT_TRUE(((restored - w).abs() <= step.unsqueeze(1) * 0.5 + 1e-6).all().item<bool>()) << bits;
  }
}

TEST(CompressedWeight, PerTensorRangesAreOneGridForTheWholeWeight) {
  torch::manual_seed(0);
  const auto w = torch::randn({16, 33}) * torch::linspace(0.1, 3, 16).unsqueeze(1);  // channels of unequal spread
  for (int bits : {8, 4}) {
    const auto c = qnoise::compress_scalar(w, bits, qnoise::ScalarObserver::MinMax, /*per_channel=*/false);
    // Stored per channel, all equal: the layout the kernels read.
    ASSERT_EQ(c.scale.numel(), 16);
    EXPECT_TRUE(c.scale.eq(c.scale[0]).all().item<bool>());
    EXPECT_TRUE(c.zero_point.eq(c.zero_point[0]).all().item<bool>());
    const float step = (w.max().item<float>() - w.min().item<float>()) / ((1 << bits) - 1);
    EXPECT_NEAR(c.scale[0].item<float>(), step, 1e-6);
    const auto restored = c.decode();
    EXPECT_LE((restored - w).abs().max().item<float>(), step / 2 + 1e-5) << bits;
    // The narrow channels lose more than with their own ranges.
    const auto own = qnoise::compress_scalar(w, bits).decode();
    EXPECT_GT((restored - w)[0].abs().mean().item<float>(), 2 * (own - w)[0].abs().mean().item<float>()) << bits;
  }
}

TEST(CompressedWeight, PqDecodesToTheChosenCentroids) {
  const auto layout = qnoise::BlockLayout::linear({4, 8}, 4);  // 8 blocks of 4
  const auto codebook = torch::arange(12, torch::kFloat).view({3, 4});
  const auto codes = torch::tensor({0, 1, 2, 0, 1, 2, 2, 1}, torch::kByte);
  const auto c = qnoise::compress_pq(layout, codebook, codes);
  const auto w = c.decode();
  EXPECT_TRUE(torch::equal(w[0], torch::cat({codebook[0], codebook[1]})));
  EXPECT_TRUE(torch::equal(w[3], torch::cat({codebook[2], codebook[1]})));
  EXPECT_EQ(c.stored_bytes(), 8 + 3 * 4 * 2);
  EXPECT_DOUBLE_EQ(c.bits_per_weight(), 8.0 * 32 / 32);
}

TEST(CompressedWeight, InconsistentPartsAreErrors) {
  auto c = qnoise::compress_pq(qnoise::BlockLayout::linear({4, 8}, 4), torch::zeros({3, 4}), torch::zeros({8}, torch::kByte));
  c.codes[5] = 3;  // K = 3
  EXPECT_THROW(c.decode(), qnoise::Error);
  c.codes[5] = 0;
  c.block_size = 3;  // does not divide 8
  EXPECT_THROW(c.validate(), qnoise::Error);
  auto s = qnoise::compress_scalar(torch::randn({4, 4}), 4);
  s.zero_point[0] = 16;
  EXPECT_THROW(s.validate(), qnoise::Error);
  s = qnoise::compress_scalar(torch::randn({4, 4}), 8);
  s.codes = s.codes.slice(0, 0, 15);
  EXPECT_THROW(s.validate(), qnoise::Error);
  EXPECT_THROW(qnoise::parse_weight_scheme("int3"), qnoise::Error);
}

TEST(CompressedWeight, PqCentroidsInEightAndFourBits) {
  const auto layout = qnoise::BlockLayout::linear({2, 9}, 3);  // odd d: packed rows of 2 bytes
  const auto codebook = (torch::arange(12, torch::kFloat).view({4, 3}) * 0.5 - 2.0);
  const auto codes = torch::tensor({3, 0, 1, 2, 2, 1}, torch::kByte);
  for (int bits : {8, 4}) {
    const auto c = qnoise::compress_pq(layout, codebook, codes, bits);
    EXPECT_EQ(c.centroid_bits, bits);
    EXPECT_EQ(c.centroids.scalar_type(), torch::kByte);
    EXPECT_EQ(c.centroids.sizes(), (bits == 8 ? std::vector<int64_t>{4, 3} : std::vector<int64_t>{4, 2}));
    EXPECT_EQ(c.stored_bytes(), 6 + (bits == 8 ? 12 : 8));
    EXPECT_EQ(c.n_centroids(), 4);
    // What training uses is what the file decodes to.
    const auto stored = qnoise::round_centroids(codebook, bits);
    EXPECT_TRUE(torch::equal(c.decoded_centroids(), stored)) << bits;
    EXPECT_TRUE(torch::equal(c.decode()[0], torch::cat({stored[3], stored[0], stored[1]}))) << bits;
    // The MSE search only ever shrinks the min-max range [-2, 3.5]; the error is about a uniform
    // quantizer's (step / sqrt(12) against a codebook RMS of 1.7).
    EXPECT_LE(c.centroid_scale, 5.5f / ((1 << bits) - 1) + 1e-6f) << bits;
    const double relative = ((stored - codebook).norm() / codebook.norm()).item<double>();
    EXPECT_LT(relative, bits == 8 ? 0.005 : 0.08) << bits;
    EXPECT_GT(relative, 0.0) << bits;
  }
  EXPECT_TRUE(torch::equal(qnoise::round_centroids(codebook, 16), codebook));
  EXPECT_THROW(qnoise::compress_pq(layout, codebook, codes, 6), qnoise::Error);
}

TEST(CompressedWeight, BadQuantizedCentroidsAreErrors) {
  const auto layout = qnoise::BlockLayout::linear({2, 8}, 4);
  auto c = qnoise::compress_pq(layout, torch::randn({5, 4}), torch::zeros({4}, torch::kByte), 4);
  c.centroid_zero_point = 16;
  EXPECT_THROW(c.validate(), qnoise::Error);
  c.centroid_zero_point = 3;
  c.centroid_scale = 0;
  EXPECT_THROW(c.validate(), qnoise::Error);
  c.centroid_scale = 0.1f;
  c.centroid_bits = 8;  // int8 centroids are [K, d], not [K, d / 2]
  EXPECT_THROW(c.validate(), qnoise::Error);
  c.centroid_bits = 4;
  EXPECT_NO_THROW(c.validate());
}
