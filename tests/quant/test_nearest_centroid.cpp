#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu_features.h"
#include "quant/nearest_centroid.h"

namespace kernels = qnoise::kernels;

namespace {

struct Assignment {
  std::vector<int32_t> index;
  std::vector<float> distance;
};

using Kernel = void (*)(const float*, int64_t, const kernels::CentroidPanel&, int32_t*, float*);

Assignment run_kernel(Kernel kernel, const torch::Tensor& x, const torch::Tensor& codebook) {
  const kernels::CentroidPanelStorage storage(codebook.data_ptr<float>(), codebook.size(0),
                                              codebook.size(1));
  Assignment out{std::vector<int32_t>(x.size(0), -1), std::vector<float>(x.size(0), -1.0f)};
  kernel(x.data_ptr<float>(), x.size(0), storage.panel(), out.index.data(), out.distance.data());
  return out;
}

// Bitwise equality, so -0.0 vs 0.0 or a different rounding both fail.
void expect_identical(const Assignment& expected, const Assignment& actual,
                      const std::string& where) {
  ASSERT_EQ(expected.index, actual.index) << where;
  ASSERT_EQ(0, std::memcmp(expected.distance.data(), actual.distance.data(),
                           expected.distance.size() * sizeof(float)))
      << where;
}

// Small integers: every product and sum is exact in float, so distances tie exactly and the
// lowest-index rule is what decides.
torch::Tensor small_integers(int64_t rows, int64_t dim) {
  return torch::randint(-2, 3, {rows, dim}, torch::kFloat);
}

}  // namespace

TEST(NearestCentroid, PanelIsTransposedScaledAndPadded) {
  auto codebook = torch::tensor({1.0f, 2.0f, -3.0f, 0.5f}).reshape({2, 2});
  const kernels::CentroidPanelStorage storage(codebook.data_ptr<float>(), 2, 2);
  const kernels::CentroidPanel panel = storage.panel();
  ASSERT_EQ(panel.padded_centroids, kernels::kCentroidTile);
  EXPECT_EQ(panel.minus_two_ct[0], -2.0f);                           // -2 c_0[0]
  EXPECT_EQ(panel.minus_two_ct[1], 6.0f);                            // -2 c_1[0]
  EXPECT_EQ(panel.minus_two_ct[panel.padded_centroids + 1], -1.0f);  // -2 c_1[1]
  EXPECT_EQ(panel.centroid_norms[0], 5.0f);
  EXPECT_EQ(panel.centroid_norms[1], 9.25f);
  EXPECT_TRUE(std::isinf(panel.centroid_norms[2]));
}

TEST(NearestCentroid, ReferenceMatchesBruteForceCdist) {
  torch::manual_seed(1);
  auto x = torch::randn({200, 5});
  auto codebook = torch::randn({37, 5});
  const Assignment got = run_kernel(kernels::nearest_centroid_reference, x, codebook);
  auto distances = torch::cdist(x.to(torch::kDouble), codebook.to(torch::kDouble)).pow(2);
  auto expected = distances.argmin(1);
  for (int64_t i = 0; i < x.size(0); ++i) {
    EXPECT_EQ(got.index[i], expected[i].item<int64_t>()) << "row " << i;
    EXPECT_NEAR(got.distance[i], distances[i][expected[i]].item<double>(), 1e-4) << "row " << i;
  }
}

TEST(NearestCentroid, TiesGoToTheLowestIndex) {
  torch::manual_seed(2);
  auto x = small_integers(300, 3);
  auto codebook = small_integers(70, 3);  // 70 centroids over 125 grid points: many duplicates
  const Assignment got = run_kernel(kernels::nearest_centroid_reference, x, codebook);
  auto exact = (x.unsqueeze(1) - codebook.unsqueeze(0)).pow(2).sum(2);  // exact integers
  for (int64_t i = 0; i < x.size(0); ++i) {
    const float best = exact[i].min().item<float>();
    const int64_t first = torch::nonzero(exact[i] == best)[0][0].item<int64_t>();
    EXPECT_EQ(got.index[i], first) << "row " << i;
    EXPECT_EQ(got.distance[i], best) << "row " << i;
  }
}

TEST(NearestCentroid, Avx2MatchesReferenceBitForBit) {
  if (!kernels::cpu_has_avx2_fma()) GTEST_SKIP() << "CPU lacks AVX2+FMA";
  torch::manual_seed(3);
  for (int64_t dim : {1, 3, 4, 8, 9, 16}) {
    for (int64_t n_centroids : {1, 5, 16, 17, 256, 300}) {
      for (int64_t n : {1, 3, 5, 37, 1000}) {
        auto x = torch::randn({n, dim}) * 3;
        auto codebook = torch::randn({n_centroids, dim}) * 3;
        const std::string where = "d=" + std::to_string(dim) + " K=" + std::to_string(n_centroids) +
                                  " n=" + std::to_string(n);
        expect_identical(run_kernel(kernels::nearest_centroid_reference, x, codebook),
                         run_kernel(kernels::nearest_centroid_avx2, x, codebook), where);
      }
    }
  }
}

TEST(NearestCentroid, Avx2BreaksTiesLikeReference) {
  if (!kernels::cpu_has_avx2_fma()) GTEST_SKIP() << "CPU lacks AVX2+FMA";
  torch::manual_seed(4);
  for (int64_t n_centroids : {3, 20, 70}) {
    auto x = small_integers(301, 3);
    auto codebook = small_integers(n_centroids, 3);
    expect_identical(run_kernel(kernels::nearest_centroid_reference, x, codebook),
                     run_kernel(kernels::nearest_centroid_avx2, x, codebook),
                     "K=" + std::to_string(n_centroids));
  }
  // All centroids equal: index 0 wins from every lane and tile.
  auto x = torch::randn({9, 4});
  auto codebook = torch::ones({40, 4});
  const Assignment got = run_kernel(kernels::nearest_centroid_avx2, x, codebook);
  for (int32_t index : got.index) EXPECT_EQ(index, 0);
}

TEST(NearestCentroid, Avx2AgreesWithReferenceOnNonFiniteRows) {
  // NaN scores never win and an all-NaN row gets index 0 in both kernels.
  if (!kernels::cpu_has_avx2_fma()) GTEST_SKIP() << "CPU lacks AVX2+FMA";
  torch::manual_seed(7);
  auto x = torch::randn({13, 4});
  x[1][2] = std::numeric_limits<float>::quiet_NaN();
  x[4][0] = std::numeric_limits<float>::infinity();
  x[9].fill_(-std::numeric_limits<float>::infinity());
  auto codebook = torch::randn({21, 4});
  codebook[3][0] = 0.0f;  // 0 * inf = NaN for that score only
  const Assignment reference = run_kernel(kernels::nearest_centroid_reference, x, codebook);
  const Assignment avx2 = run_kernel(kernels::nearest_centroid_avx2, x, codebook);
  EXPECT_EQ(reference.index, avx2.index);
  EXPECT_EQ(reference.index[1], 0);
  for (size_t i = 0; i < reference.distance.size(); ++i)
    EXPECT_TRUE(reference.distance[i] == avx2.distance[i] ||
                (std::isnan(reference.distance[i]) && std::isnan(avx2.distance[i])))
        << "row " << i;
}

TEST(NearestCentroid, DispatchSplitsRowsAcrossThreadsLikeReference) {
  torch::manual_seed(5);
  auto x = torch::randn({5003, 8});
  auto codebook = torch::randn({256, 8});
  expect_identical(run_kernel(kernels::nearest_centroid_reference, x, codebook),
                   run_kernel(kernels::nearest_centroid, x, codebook), "dispatch");
}

TEST(NearestCentroid, DistancesAreNeverNegative) {
  // A vector equal to a centroid: cancellation can make the expanded formula slightly negative.
  torch::manual_seed(6);
  auto codebook = torch::randn({20, 9}) * 100;
  auto x = codebook.clone();
  const Assignment got = run_kernel(kernels::nearest_centroid, x, codebook);
  for (int64_t i = 0; i < x.size(0); ++i) {
    EXPECT_EQ(got.index[i], i);
    EXPECT_GE(got.distance[i], 0.0f);
    EXPECT_LT(got.distance[i], 1e-1f);
  }
}
