// PQ layers with trainable centroids: decoding, the mean-gradient rule, and their errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qnoise/error.h"
#include "qnoise/pq_layers.h"

namespace {

struct TwoLayers : torch::nn::Module {
  TwoLayers() {
    fc = register_module("fc", torch::nn::Linear(8, 4));
    other = register_module("other", torch::nn::Linear(4, 2));
  }
  torch::nn::Linear fc{nullptr}, other{nullptr};
};

// 4 x 8 weight in blocks of 4: 8 blocks, codes 0,1,2,0,1,2,0,0 over K = 3 centroids.
const std::vector<int64_t> kCodes = {0, 1, 2, 0, 1, 2, 0, 0};

torch::Tensor sample_codebook() {
  return torch::tensor({{1.0f, 2.0f, 3.0f, 4.0f}, {-1.0f, 0.5f, 0.25f, 0.0f}, {0.1f, 0.2f, 0.3f, 0.4f}});
}

}  // namespace

TEST(PqLayers, WeightIsTheCodebookLookupAndIsFrozen) {
  TwoLayers model;
  qnoise::PqLayers pq;
  pq.add(model, "fc", qnoise::BlockLayout::linear({4, 8}, 4), sample_codebook(), torch::tensor(kCodes));
  const auto codebook = sample_codebook();
  for (int64_t b = 0; b < 8; ++b) {
    const auto block = model.fc->weight.reshape({8, 4})[b];
    // Stored centroids are float16: these values are exact in float16 except 0.1, 0.2, 0.3, 0.4.
    EXPECT_TRUE(torch::allclose(block, codebook[kCodes[b]], 0, 1e-3)) << b;
    EXPECT_TRUE(torch::equal(block, codebook[kCodes[b]].to(torch::kHalf).to(torch::kFloat))) << b;
  }
  EXPECT_FALSE(model.fc->weight.requires_grad());
  EXPECT_TRUE(model.other->weight.requires_grad());
  EXPECT_TRUE(pq.contains("fc"));
  EXPECT_FALSE(pq.contains("other"));
  const auto stored = pq.compressed(*pq.find("fc"));
  EXPECT_EQ(stored.scheme, qnoise::WeightScheme::PQ);
  EXPECT_TRUE(torch::equal(stored.decode(), model.fc->weight));
}

TEST(PqLayers, CentroidGradientIsTheMeanOfItsBlocksGradients) {
  TwoLayers model;
  qnoise::PqLayers pq;
  pq.add(model, "fc", qnoise::BlockLayout::linear({4, 8}, 4), sample_codebook(), torch::tensor(kCodes));
  const auto upstream = torch::arange(32, torch::kFloat).reshape({4, 8});  // dLoss/dW
  {
    auto scope = pq.bind();
    (model.fc->weight * upstream).sum().backward();
  }
  const auto& centroids = pq.layers()[0].centroids;
  ASSERT_TRUE(centroids.grad().defined());
  const auto blocks = upstream.reshape({8, 4});
  for (int64_t k = 0; k < 3; ++k) {
    auto sum = torch::zeros({4});
    int64_t count = 0;
    for (int64_t b = 0; b < 8; ++b)
      if (kCodes[b] == k) sum += blocks[b], ++count;
    EXPECT_TRUE(torch::allclose(centroids.grad()[k], sum / count)) << "centroid " << k;
  }
  // Outside the scope the layer reads its (frozen) parameter again.
  EXPECT_TRUE(model.fc->weight.is_leaf());
}

TEST(PqLayers, FourBitCentroidsTrainWhatTheFileStores) {
  TwoLayers model;
  qnoise::PqLayers pq;
  pq.add(model, "fc", qnoise::BlockLayout::linear({4, 8}, 4), sample_codebook(), torch::tensor(kCodes), 4);
  const auto stored = qnoise::round_centroids(sample_codebook(), 4);
  EXPECT_FALSE(torch::equal(stored, sample_codebook()));  // 4 bits cannot hold 0.1 ... 4 exactly
  const auto upstream = torch::arange(32, torch::kFloat).reshape({4, 8});
  {
    auto scope = pq.bind();
    // The forward pass sees the stored centroids...
    EXPECT_TRUE(torch::equal(model.fc->weight.reshape({8, 4})[2], stored[2]));
    (model.fc->weight * upstream).sum().backward();
  }
  // ...the gradient passes straight through the rounding to the float centroids.
  const auto blocks = upstream.reshape({8, 4});
  EXPECT_TRUE(torch::allclose(pq.layers()[0].centroids.grad()[2], (blocks[2] + blocks[5]) / 2));
  // The parameter and the file hold the same 4-bit centroids.
  const auto file = pq.compressed(*pq.find("fc"));
  EXPECT_EQ(file.centroid_bits, 4);
  EXPECT_TRUE(torch::equal(file.decode(), model.fc->weight));
  EXPECT_THROW(pq.add(model, "other", qnoise::BlockLayout::linear({2, 4}, 4), sample_codebook(),
                      torch::tensor({0, 1}), 5),
               qnoise::Error);
}

TEST(PqLayers, AStepOnTheCentroidsMovesEveryBlockThatUsesThem) {
  TwoLayers model;
  qnoise::PqLayers pq;
  pq.add(model, "fc", qnoise::BlockLayout::linear({4, 8}, 4), sample_codebook(), torch::tensor(kCodes));
  torch::optim::SGD sgd(pq.centroid_parameters(), torch::optim::SGDOptions(0.5));
  {
    auto scope = pq.bind();
    model.fc->weight.sum().backward();  // every block's gradient is 1: every centroid's mean is 1
  }
  sgd.step();
  pq.write_back();
  const auto expected = (sample_codebook() - 0.5).to(torch::kHalf).to(torch::kFloat);
  for (int64_t b = 0; b < 8; ++b)
    EXPECT_TRUE(torch::equal(model.fc->weight.reshape({8, 4})[b], expected[kCodes[b]])) << b;
}

TEST(PqLayers, BadLayersAndShapesAreErrors) {
  TwoLayers model;
  qnoise::PqLayers pq;
  const auto layout = qnoise::BlockLayout::linear({4, 8}, 4);
  EXPECT_THROW(pq.add(model, "missing", layout, sample_codebook(), torch::tensor(kCodes)), qnoise::Error);
  EXPECT_THROW(pq.add(model, "other", layout, sample_codebook(), torch::tensor(kCodes)), qnoise::Error);  // shape
  EXPECT_THROW(pq.add(model, "fc", layout, sample_codebook(), torch::tensor(std::vector<int64_t>{0, 1})),
               qnoise::Error);
  EXPECT_THROW(pq.add(model, "fc", layout, sample_codebook(), torch::full({8}, 3, torch::kLong)), qnoise::Error);
  EXPECT_THROW(pq.add(model, "fc", layout, torch::zeros({3, 2}), torch::tensor(kCodes)), qnoise::Error);
  pq.add(model, "fc", layout, sample_codebook(), torch::tensor(kCodes));
  EXPECT_THROW(pq.add(model, "fc", layout, sample_codebook(), torch::tensor(kCodes)), qnoise::Error);  // twice
}
