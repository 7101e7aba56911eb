#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qnoise/compressed_weight.h"
#include "qnoise/embedding_rows.h"
#include "qnoise/error.h"

namespace {

// decode_rows must equal the rows of the fully decoded table, bit for bit.
void expect_rows(const qnoise::CompressedWeight& table, const torch::Tensor& indices, const std::string& what) {
  const auto rows = qnoise::decode_rows(table, indices);
  const auto expected = table.decode().index_select(0, indices.reshape({-1}).to(torch::kLong));
  EXPECT_TRUE(torch::equal(rows, expected)) << what;
}

}  // namespace

TEST(EmbeddingRows, EverySchemeDecodesOnlyTheRowsAskedFor) {
  torch::manual_seed(0);
  const auto weight = torch::randn({11, 5});  // odd numel: int4 rows straddle bytes
  const auto indices = torch::tensor({{3, 0}, {10, 3}}, torch::kInt);
  expect_rows(qnoise::compress_float(weight, qnoise::WeightScheme::Float32), indices, "float32");
  expect_rows(qnoise::compress_float(weight, qnoise::WeightScheme::Float16), indices, "float16");
  expect_rows(qnoise::compress_scalar(weight, 8), indices, "int8");
  expect_rows(qnoise::compress_scalar(weight, 4), indices, "int4");
  const auto pq = qnoise::compress_pq(qnoise::BlockLayout::embedding({9, 12}, 4), torch::randn({6, 4}),
                                      torch::randint(0, 6, {27}, torch::kLong).to(torch::kByte));
  expect_rows(pq, torch::tensor({8, 1, 1}), "pq");
  EXPECT_EQ(qnoise::decode_rows(pq, torch::empty({0}, torch::kLong)).sizes(), (std::vector<int64_t>{0, 12}));
}

TEST(EmbeddingRows, BadIndicesAndTablesThrow) {
  const auto table = qnoise::compress_scalar(torch::randn({4, 6}), 8);
  EXPECT_THROW(qnoise::decode_rows(table, torch::tensor({4})), qnoise::Error);
  EXPECT_THROW(qnoise::decode_rows(table, torch::tensor({-1})), qnoise::Error);
  EXPECT_THROW(qnoise::decode_rows(table, torch::tensor({1.0f})), qnoise::Error);
  auto pq = qnoise::compress_pq(qnoise::BlockLayout::embedding({4, 8}, 4), torch::randn({3, 4}),
                                torch::zeros({8}, torch::kByte));
  pq.codes[3] = 5;  // row 1, block 1
  EXPECT_NO_THROW(qnoise::decode_rows(pq, torch::tensor({0, 2})));
  try {
    qnoise::decode_rows(pq, torch::tensor({1}));
    ADD_FAILURE() << "no error for a code >= K";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not below K = 3"), std::string::npos) << e.what();
  }
}
