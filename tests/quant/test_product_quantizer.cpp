#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>
#include <string>
#include <vector>

#include "qnoise/block_layout.h"
#include "qnoise/error.h"
#include "qnoise/product_quantizer.h"

using qnoise::KMeansInit;
using qnoise::KMeansStats;
using qnoise::ProductQuantizer;
using qnoise::ProductQuantizerOptions;

namespace {

ProductQuantizerOptions options_with(int64_t n_centroids, int n_iterations,
                                     KMeansInit init = KMeansInit::Sampled, uint64_t seed = 0) {
  return ProductQuantizerOptions()
      .set_n_centroids(n_centroids)
      .set_n_iterations(n_iterations)
      .set_init(init)
      .set_seed(seed);
}

// Points around 8 centres +-20 e_i in 4-D (pairwise >= 28 apart), shuffled.
struct Clusters {
  torch::Tensor points;   // [n, 4]
  torch::Tensor labels;   // [n] index of the true centre
  torch::Tensor centres;  // [n_clusters, 4]
};

Clusters well_separated_clusters(int64_t n_clusters, int64_t per_cluster, double noise) {
  auto centres = torch::zeros({n_clusters, 4});
  for (int64_t k = 0; k < n_clusters; ++k) centres[k][k % 4] = k < 4 ? 20.0 : -20.0;
  auto labels = torch::arange(n_clusters).repeat_interleave(per_cluster);
  auto order = torch::randperm(labels.size(0));
  labels = labels.index_select(0, order);
  auto points = centres.index_select(0, labels) + noise * torch::randn({labels.size(0), 4});
  return {points, labels, centres};
}

// Codes as int64 indices whatever their dtype.
torch::Tensor code_indices(const torch::Tensor& codes) {
  return codes.scalar_type() == torch::kShort ? codes.to(torch::kLong).bitwise_and(0xFFFF)
                                              : codes.to(torch::kLong);
}

void expect_objective_never_increases(const KMeansStats& stats) {
  ASSERT_FALSE(stats.objective.empty());
  for (size_t t = 1; t < stats.objective.size(); ++t)
    EXPECT_LE(stats.objective[t], stats.objective[t - 1] * (1 + 1e-6)) << "iteration " << t;
}

template <typename Action>
std::string error_message(Action action) {
  try {
    action();
  } catch (const qnoise::Error& error) {
    return error.what();
  }
  return "no qnoise::Error thrown";
}

}  // namespace

TEST(ProductQuantizer, DecodedBlocksTakeAtMostKDistinctValues) {
  torch::manual_seed(10);
  auto blocks = torch::randn({2000, 4});
  ProductQuantizer pq(4, options_with(16, 8));
  pq.train(blocks);
  ASSERT_EQ(pq.codebook().sizes(), (std::vector<int64_t>{16, 4}));
  auto codes = pq.compute_codes(blocks);
  ASSERT_EQ(codes.sizes(), (std::vector<int64_t>{2000}));
  EXPECT_LT(code_indices(codes).max().item<int64_t>(), 16);
  auto decoded = pq.decode(codes);
  ASSERT_EQ(decoded.sizes(), blocks.sizes());
  auto distinct = std::get<0>(torch::unique_dim(decoded, 0));
  EXPECT_LE(distinct.size(0), 16);
  EXPECT_GT(distinct.size(0), 1);
  EXPECT_TRUE(torch::equal(decoded, pq.codebook().index_select(0, code_indices(codes))));
}

TEST(ProductQuantizer, CodesAreTheNearestCentroid) {
  torch::manual_seed(11);
  auto blocks = torch::randn({1000, 8});
  ProductQuantizer pq(8, options_with(64, 4));
  pq.train(blocks);
  auto chosen = (blocks - pq.decode(pq.compute_codes(blocks))).pow(2).sum(1);
  auto best = std::get<0>(torch::cdist(blocks, pq.codebook()).pow(2).min(1));
  EXPECT_TRUE(torch::allclose(chosen, best, 1e-4, 1e-4));
}

TEST(ProductQuantizer, IndexDtypeIsUint8UpTo256CentroidsAndInt16Above) {
  EXPECT_EQ(ProductQuantizer::index_dtype(1), torch::kByte);
  EXPECT_EQ(ProductQuantizer::index_dtype(256), torch::kByte);
  EXPECT_EQ(ProductQuantizer::index_dtype(257), torch::kShort);
  EXPECT_EQ(ProductQuantizer::index_dtype(65536), torch::kShort);
  torch::manual_seed(12);
  auto blocks = torch::randn({4000, 4});
  ProductQuantizer small(4, options_with(256, 2));
  small.train(blocks);
  EXPECT_EQ(small.compute_codes(blocks).scalar_type(), torch::kByte);
  ProductQuantizer large(4, options_with(1000, 2));
  large.train(blocks);
  auto codes = large.compute_codes(blocks);
  EXPECT_EQ(codes.scalar_type(), torch::kShort);
  EXPECT_GT(code_indices(codes).max().item<int64_t>(), 255);
  EXPECT_TRUE(
      torch::equal(large.decode(codes), large.codebook().index_select(0, code_indices(codes))));
}

TEST(ProductQuantizer, IndicesAbove32767RoundTripThroughInt16) {
  // 34000 distinct points of a 200 x 170 integer grid: float distances are exact, so with K = n
  // every block is its own centroid and must come back unchanged.
  auto grid =
      torch::stack(torch::meshgrid({torch::arange(-100, 100), torch::arange(-85, 85)}, "ij"), 2);
  auto blocks = grid.reshape({-1, 2}).to(torch::kFloat);
  ASSERT_EQ(blocks.size(0), 34000);
  ProductQuantizer pq(2, options_with(34000, 1));
  pq.train(blocks);
  auto codes = pq.compute_codes(blocks);
  ASSERT_EQ(codes.scalar_type(), torch::kShort);
  EXPECT_GT(code_indices(codes).max().item<int64_t>(), 32767);
  EXPECT_EQ(std::get<0>(torch::_unique(code_indices(codes))).size(0), 34000);
  EXPECT_TRUE(torch::equal(pq.decode(codes), blocks));
}

TEST(KMeans, ObjectiveNeverIncreases) {
  torch::manual_seed(13);
  auto blocks = torch::randn({4096, 4});
  for (KMeansInit init : {KMeansInit::Sampled, KMeansInit::KMeansPlusPlus}) {
    ProductQuantizer pq(4, options_with(32, 20, init, 7));
    const KMeansStats stats = pq.train(blocks);
    ASSERT_EQ(stats.objective.size(), 20u);
    expect_objective_never_increases(stats);
    EXPECT_LT(stats.objective.back(), 0.9 * stats.objective.front());
  }
}

TEST(KMeans, PlusPlusRecoversWellSeparatedClusters) {
  torch::manual_seed(14);
  const Clusters data = well_separated_clusters(8, 200, 0.1);
  ProductQuantizer pq(4, options_with(8, 10, KMeansInit::KMeansPlusPlus, 3));
  pq.train(data.points);
  // The centroid nearest each true centre, which must be a permutation.
  auto nearest = torch::cdist(data.centres, pq.codebook()).min(1);
  auto gap = std::get<0>(nearest);
  auto permutation = std::get<1>(nearest);
  EXPECT_LT(gap.max().item<float>(), 0.05f);
  EXPECT_EQ(std::get<0>(torch::_unique(permutation)).size(0), 8);
  auto codes = code_indices(pq.compute_codes(data.points));
  EXPECT_TRUE(torch::equal(codes, permutation.index_select(0, data.labels)));
}

TEST(KMeans, SampledInitKeepsEachTrueClusterTogether) {
  torch::manual_seed(15);
  const Clusters data = well_separated_clusters(8, 200, 0.1);
  ProductQuantizer pq(4, options_with(8, 10, KMeansInit::Sampled, 3));
  pq.train(data.points);
  auto codes = code_indices(pq.compute_codes(data.points));
  int64_t clusters_with_one_code = 0;
  for (int64_t k = 0; k < 8; ++k) {
    auto cluster_codes = codes.masked_select(data.labels == k);
    clusters_with_one_code += (cluster_codes == cluster_codes[0]).all().item<bool>() ? 1 : 0;
  }
  EXPECT_GE(clusters_with_one_code, 1);
}

TEST(KMeans, InjectedEmptyClusterIsRepaired) {
  torch::manual_seed(16);
  const Clusters data = well_separated_clusters(4, 100, 0.1);
  auto initial = data.centres.clone();
  initial[3].fill_(1e3);  // far from every point: empty after the first E-step
  ProductQuantizer pq(4, options_with(4, 5));
  const KMeansStats stats = pq.train(data.points, initial);
  EXPECT_GE(stats.n_empty_repaired, 1);
  expect_objective_never_increases(stats);
  EXPECT_LT(pq.codebook()[3].norm().item<float>(), 100.0f);
  auto counts = torch::bincount(code_indices(pq.compute_codes(data.points)), {}, 4);
  EXPECT_GE(counts.min().item<int64_t>(), 1) << counts;
}

TEST(KMeans, RepairFillsManyEmptyClustersOnDuplicatedData) {
  // 10 distinct rows repeated: K = 40 can only have 10 distinct centroids, so every iteration
  // must split clusters without ever leaving one empty in the M-step.
  torch::manual_seed(17);
  auto blocks = torch::randn({10, 3}).repeat({50, 1});
  ProductQuantizer pq(3, options_with(40, 3, KMeansInit::KMeansPlusPlus));
  const KMeansStats stats = pq.train(blocks);
  EXPECT_GE(stats.n_empty_repaired, 30);
  expect_objective_never_increases(stats);
  EXPECT_TRUE(torch::isfinite(pq.codebook()).all().item<bool>());
  // Zero up to the rounding of the expanded distance formula (the data's energy is ~1500).
  EXPECT_LT(stats.objective.back(), 1e-3);
}

TEST(ProductQuantizer, SameSeedGivesTheSameCodebook) {
  torch::manual_seed(18);
  auto blocks = torch::randn({3000, 4});
  for (KMeansInit init : {KMeansInit::Sampled, KMeansInit::KMeansPlusPlus}) {
    ProductQuantizer first(4, options_with(16, 5, init, 1));
    ProductQuantizer again(4, options_with(16, 5, init, 1));
    ProductQuantizer other(4, options_with(16, 5, init, 2));
    first.train(blocks);
    again.train(blocks);
    other.train(blocks);
    EXPECT_TRUE(torch::equal(first.codebook(), again.codebook()));
    EXPECT_FALSE(torch::equal(first.codebook(), other.codebook()));
  }
}

TEST(ProductQuantizer, CodebookDoesNotDependOnTheThreadCount) {
  torch::manual_seed(19);
  auto blocks = torch::randn({20000, 8});
  const int threads = at::get_num_threads();
  std::vector<torch::Tensor> codebooks;
  for (int n_threads : {1, 2}) {
    at::set_num_threads(n_threads);
    ProductQuantizer pq(8, options_with(64, 4, KMeansInit::KMeansPlusPlus, 5));
    pq.train(blocks);
    codebooks.push_back(pq.codebook());
  }
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(codebooks[0], codebooks[1]));
}

TEST(ProductQuantizer, RejectsBadInput) {
  auto blocks = torch::randn({100, 4});
  auto train = [](int64_t n_centroids, const torch::Tensor& data, int64_t block_size = 4) {
    ProductQuantizer pq(block_size, options_with(n_centroids, 2));
    pq.train(data);
  };
  EXPECT_THROW(train(0, blocks), qnoise::Error);
  EXPECT_THROW(train(65537, torch::randn({70000, 1}), 1), qnoise::Error);
  const std::string too_many = error_message([&] { train(101, blocks); });
  EXPECT_NE(too_many.find("K = 101"), std::string::npos) << too_many;
  EXPECT_NE(too_many.find("n_blocks = 100"), std::string::npos) << too_many;
  EXPECT_THROW(train(4, torch::empty({0, 4})), qnoise::Error);
  EXPECT_THROW(train(4, torch::Tensor()), qnoise::Error);
  EXPECT_THROW(train(4, torch::randn({400})), qnoise::Error);
  EXPECT_THROW(train(4, torch::randn({100, 5})), qnoise::Error);
  EXPECT_THROW(train(4, torch::ones({100, 4}, torch::kInt)), qnoise::Error);
  auto with_nan = blocks.clone();
  with_nan[7][2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(train(4, with_nan), qnoise::Error);
  auto with_inf = blocks.clone();
  with_inf[3][0] = -std::numeric_limits<float>::infinity();
  EXPECT_THROW(train(4, with_inf), qnoise::Error);

  ProductQuantizer pq(4, options_with(8, 2));
  EXPECT_THROW(pq.compute_codes(blocks), qnoise::Error);  // no codebook yet
  EXPECT_THROW(pq.train(blocks, torch::randn({7, 4})), qnoise::Error);
  pq.train(blocks);
  EXPECT_THROW(pq.decode(torch::tensor({0, 8})), qnoise::Error);
  EXPECT_THROW(pq.decode(torch::tensor({-1, 2})), qnoise::Error);
  EXPECT_THROW(pq.decode(torch::tensor({0.0f, 1.0f})), qnoise::Error);
  EXPECT_THROW(pq.compute_codes(torch::randn({10, 3})), qnoise::Error);
  EXPECT_THROW(pq.set_codebook(torch::randn({8, 5})), qnoise::Error);
}

TEST(ProductQuantizer, AcceptsDoubleBlocksAndAnyIntegerCodes) {
  torch::manual_seed(20);
  auto blocks = torch::randn({500, 4}, torch::kDouble);
  ProductQuantizer pq(4, options_with(8, 3));
  pq.train(blocks);
  EXPECT_EQ(pq.codebook().scalar_type(), torch::kFloat);
  auto codes = pq.compute_codes(blocks);
  EXPECT_TRUE(torch::equal(pq.decode(codes), pq.decode(codes.to(torch::kLong))));
}

TEST(ProductQuantizer, RelativeErrorFallsWithMoreCentroids) {
  EXPECT_DOUBLE_EQ(qnoise::relative_error(torch::ones({4}), torch::zeros({4})), 1.0);
  EXPECT_DOUBLE_EQ(qnoise::relative_error(torch::ones({4}), torch::ones({4})), 0.0);
  EXPECT_THROW(qnoise::relative_error(torch::ones({4}), torch::ones({5})), qnoise::Error);

  torch::manual_seed(21);
  auto weight = torch::randn({256, 256});
  const auto layout = qnoise::BlockLayout::linear({256, 256}, 8);
  auto blocks = layout.to_blocks(weight);
  std::vector<double> errors;
  for (int64_t n_centroids : {16, 256}) {
    ProductQuantizer pq(8, options_with(n_centroids, 10));
    pq.train(blocks);
    auto rebuilt = layout.from_blocks(pq.decode(pq.compute_codes(blocks)));
    errors.push_back(qnoise::relative_error(weight, rebuilt));
  }
  EXPECT_LT(errors[1], errors[0]);
  EXPECT_LT(errors[0], 0.85);
  EXPECT_LT(errors[1], 0.6);
  EXPECT_GT(errors[1], 0.2);
}
