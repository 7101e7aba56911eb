#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qnoise/block_layout.h"
#include "qnoise/error.h"

using qnoise::BlockLayout;

TEST(BlockLayout, LinearBlocksAreConsecutiveInputWeightsOfOneRow) {
  auto w = torch::arange(24, torch::kFloat).reshape({3, 8});
  BlockLayout layout = BlockLayout::linear({3, 8}, 4);
  EXPECT_EQ(layout.n_blocks(), 6);
  EXPECT_EQ(layout.blocks_per_row(), 2);
  auto blocks = layout.to_blocks(w);
  ASSERT_EQ(blocks.sizes(), (std::vector<int64_t>{6, 4}));
  // Block (row 1, second block) holds w[1, 4:8] = 12..15.
  EXPECT_TRUE(torch::equal(blocks[3], torch::arange(12, 16, torch::kFloat)));
  EXPECT_TRUE(torch::equal(layout.from_blocks(blocks), w));
}

TEST(BlockLayout, ConvKernelBlocksAreWholeKernels) {
  auto w = torch::arange(2 * 3 * 3 * 3, torch::kFloat).reshape({2, 3, 3, 3});
  BlockLayout layout = BlockLayout::conv2d({2, 3, 3, 3}, 9);
  auto blocks = layout.to_blocks(w);
  ASSERT_EQ(blocks.size(0), 6);
  for (int o = 0; o < 2; ++o)
    for (int i = 0; i < 3; ++i)
      EXPECT_TRUE(torch::equal(blocks[o * 3 + i], w[o][i].flatten()));
}

TEST(BlockLayout, PointwiseConvBlocksGroupInputChannels) {
  auto w = torch::randn({4, 8, 1, 1});
  BlockLayout layout = BlockLayout::conv2d({4, 8, 1, 1}, 4);
  auto blocks = layout.to_blocks(w);
  EXPECT_TRUE(torch::equal(blocks[1], w[0].flatten().slice(0, 4, 8)));
}

TEST(BlockLayout, EmbeddingBlocksRunAlongTheEmbeddingDimension) {
  auto w = torch::randn({10, 6});
  BlockLayout layout = BlockLayout::embedding({10, 6}, 3);
  EXPECT_TRUE(torch::equal(layout.to_blocks(w)[5], w[2].slice(0, 3, 6)));
}

TEST(BlockLayout, ExpandPerBlockRepeatsValuesOverBlocks) {
  BlockLayout layout = BlockLayout::linear({2, 4}, 2);
  auto expanded = layout.expand_per_block(torch::tensor({1.f, 2.f, 3.f, 4.f}));
  EXPECT_TRUE(torch::equal(expanded, torch::tensor({{1.f, 1.f, 2.f, 2.f}, {3.f, 3.f, 4.f, 4.f}})));
}

TEST(BlockLayout, BlockSizeThatDoesNotDivideNamesShapeAndSize) {
  try {
    BlockLayout::linear({16, 10}, 4);
    FAIL() << "expected an error";
  } catch (const qnoise::Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("block_size 4"), std::string::npos) << message;
    EXPECT_NE(message.find("[16, 10]"), std::string::npos) << message;
    EXPECT_NE(message.find("in_features 10"), std::string::npos) << message;
  }
  EXPECT_THROW(BlockLayout::conv2d({8, 3, 3, 3}, 4), qnoise::Error);
  EXPECT_THROW(BlockLayout::linear({8, 8}, 0), qnoise::Error);
  EXPECT_THROW(BlockLayout::linear({8, 8, 1}, 4), qnoise::Error);
  EXPECT_THROW(BlockLayout::linear({0, 8}, 4), qnoise::Error);
}

TEST(BlockLayout, WeightOfTheWrongShapeIsRejected) {
  BlockLayout layout = BlockLayout::linear({4, 8}, 4);
  EXPECT_THROW(layout.to_blocks(torch::randn({8, 4})), qnoise::Error);
}
