#include <gtest/gtest.h>
#include <torch/torch.h>

#include "kernels/noise_kernels.h"
#include "kernels/cpu_features.h"

namespace {

// Runs one row kernel over a whole weight; returns false on non-finite rows.
template <typename Kernel>
bool run_rows(Kernel kernel, const torch::Tensor& weight, torch::Tensor& out, int64_t block_size,
              const qnoise::kernels::ScalarNoiseSpec& spec, const qnoise::BlockMaskSampler& sampler) {
  std::vector<int32_t> mask(weight.size(1));
  qnoise::kernels::RowRange rows{weight.data_ptr<float>(), out.data_ptr<float>(), 0, weight.size(0),
                                 weight.size(1), block_size};
  return kernel(rows, spec, sampler, mask.data());
}

}  // namespace

TEST(NoiseKernels, Avx2RowKernelEqualsThePortableOneOnRaggedShapes) {
  if (!qnoise::kernels::cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  torch::manual_seed(0);
  for (int64_t cols : {1, 7, 8, 9, 31, 64, 100}) {
    for (int64_t block_size : {int64_t{1}, cols}) {
      for (int bits : {2, 4, 8}) {
        for (bool symmetric : {false, true}) {
          auto weight = torch::randn({13, cols}) * 2;
          qnoise::kernels::ScalarNoiseSpec spec;
          spec.bits = bits;
          spec.symmetric = symmetric;
          qnoise::BlockMaskSampler sampler(0.4, 1234 + cols);
          auto portable = torch::empty_like(weight), simd = torch::empty_like(weight);
          ASSERT_TRUE(run_rows(qnoise::kernels::scalar_noise_rows_portable, weight, portable, block_size, spec, sampler));
          ASSERT_TRUE(run_rows(qnoise::kernels::scalar_noise_rows_avx2, weight, simd, block_size, spec, sampler));
          EXPECT_TRUE(torch::equal(portable, simd))
              << cols << " cols, block " << block_size << ", " << bits << " bits, symmetric " << symmetric;
        }
      }
    }
  }
}

TEST(NoiseKernels, Avx2PqRowKernelEqualsThePortableOne) {
  if (!qnoise::kernels::cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  torch::manual_seed(1);
  for (int64_t cols : {1, 4, 9, 16, 36, 100}) {
    for (int64_t block_size : {int64_t{1}, int64_t{2}, int64_t{4}, cols}) {
      if (cols % block_size != 0) continue;
      auto weight = torch::randn({11, cols});
      auto portable = torch::empty_like(weight), simd = torch::empty_like(weight);
      qnoise::BlockMaskSampler sampler(0.3, 77 + cols);
      std::vector<int32_t> mask(cols);
      qnoise::kernels::RowRange rows{weight.data_ptr<float>(), portable.data_ptr<float>(), 0, 11, cols, block_size};
      qnoise::kernels::pq_noise_rows_portable(rows, sampler, 1.25f, mask.data());
      rows.out = simd.data_ptr<float>();
      qnoise::kernels::pq_noise_rows_avx2(rows, sampler, 1.25f, mask.data());
      EXPECT_TRUE(torch::equal(portable, simd)) << cols << " cols, block " << block_size;
    }
  }
}

TEST(NoiseKernels, RowKernelsReportNonFiniteWeights) {
  qnoise::kernels::ScalarNoiseSpec spec;
  qnoise::BlockMaskSampler sampler(0.5, 1);
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    auto weight = torch::randn({3, 20});
    weight[1][17] = bad;
    auto out = torch::empty_like(weight);
    EXPECT_FALSE(run_rows(qnoise::kernels::scalar_noise_rows_portable, weight, out, 1, spec, sampler));
    if (qnoise::kernels::cpu_has_avx2_fma())
      EXPECT_FALSE(run_rows(qnoise::kernels::scalar_noise_rows_avx2, weight, out, 1, spec, sampler));
  }
}

TEST(NoiseKernels, MaskSamplerHasTheRequestedRateAtItsResolution) {
  qnoise::BlockMaskSampler none(0.0, 3), all(1.0, 3), some(0.3, 3);
  EXPECT_EQ(none.effective_rate(), 0.0);
  EXPECT_EQ(all.effective_rate(), 1.0);
  EXPECT_NEAR(some.effective_rate(), 0.3, 1.0 / 131072);  // within half a step of 2^-16
  int64_t chosen_none = 0, chosen_all = 0;
  for (int64_t block = 0; block < 100000; ++block) {
    chosen_none += none.chosen(block);
    chosen_all += all.chosen(block);
  }
  EXPECT_EQ(chosen_none, 0);
  EXPECT_EQ(chosen_all, 100000);
}
