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
