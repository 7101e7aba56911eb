#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "qnoise/error.h"
#include "qnoise/product_quantizer.h"
#include "qnoise/quant_noise.h"

using qnoise::BlockLayout;
using qnoise::NoiseFunction;

namespace {

NoiseFunction int_noise(int bits, bool symmetric = false, bool per_channel = true) {
  return NoiseFunction::fake_quant(
      qnoise::ScalarQuantizerOptions().set_bits(bits).set_symmetric(symmetric).set_per_channel(per_channel));
}

torch::Tensor full_fake_quant(const torch::Tensor& w, int bits) {
  qnoise::ScalarQuantizer quantizer(qnoise::ScalarQuantizerOptions().set_bits(bits));
  auto qparams = quantizer.observe(w);
  return quantizer.decode(quantizer.compute_codes(w, qparams), qparams);
}

}  // namespace

TEST(QuantNoise, RateZeroAndEvalModeAreTheIdentity) {
  auto w = torch::randn({16, 32});
  auto layout = BlockLayout::linear({16, 32}, 8);
  EXPECT_TRUE(qnoise::quant_noise(w, layout, 0.0, NoiseFunction::pq()).is_same(w));
  EXPECT_TRUE(qnoise::quant_noise(w, layout, 0.5, NoiseFunction::pq(), /*training=*/false).is_same(w));
  EXPECT_TRUE(qnoise::quant_noise(w, layout, 1.0, int_noise(8), /*training=*/false).is_same(w));
}

TEST(QuantNoise, RateOneScalarNoiseIsFullFakeQuantization) {
  torch::manual_seed(0);
  auto w = torch::randn({64, 96});
  auto layout = BlockLayout::linear({64, 96}, 1);
  for (int bits : {8, 4}) {
    auto noisy = qnoise::quant_noise(w, layout, 1.0, int_noise(bits));
    EXPECT_TRUE(torch::equal(noisy, full_fake_quant(w, bits))) << bits << " bits";
  }
}

TEST(QuantNoise, PqNoiseZeroesWholeBlocksAtRatePAndScalesSurvivors) {
  torch::manual_seed(1);
  const int64_t rows = 256, cols = 512, block = 8;
  const double rate = 0.1;
  auto w = torch::rand({rows, cols}) + 0.5;  // no zero weights, so a zero means "dropped"
  auto layout = BlockLayout::linear({rows, cols}, block);
  auto noisy = qnoise::quant_noise(w, layout, rate, NoiseFunction::pq());
  auto blocks = layout.to_blocks(noisy);
  auto zero_count = blocks.eq(0).sum(1);
  // Every block is either wholly zero or wholly kept.
  EXPECT_TRUE(torch::logical_or(zero_count == 0, zero_count == block).all().item<bool>());
  auto dropped = zero_count == block;
  const double n = layout.n_blocks();
  const double count = dropped.sum().item<double>();
  const double sd = std::sqrt(n * rate * (1 - rate));
  EXPECT_NEAR(count, n * rate, 5 * sd);
  auto kept = layout.to_blocks(w).index({~dropped});
  EXPECT_TRUE(torch::equal(blocks.index({~dropped}), kept * static_cast<float>(1.0 / (1.0 - rate))));
}

TEST(QuantNoise, PqNoiseIsUnbiasedOverManyDraws) {
  torch::manual_seed(2);
  auto w = torch::randn({16, 32});
  auto layout = BlockLayout::linear({16, 32}, 4);
  const double rate = 0.2;
  const int draws = 4000;
  auto sum = torch::zeros_like(w);
  for (int i = 0; i < draws; ++i) sum += qnoise::quant_noise(w, layout, rate, NoiseFunction::pq());
  auto mean = sum / draws;
  // Each draw has standard deviation |w| sqrt(p / (1 - p)); allow 6 standard errors of the mean.
  auto bound = w.abs() * std::sqrt(rate / (1 - rate) / draws) * 6 + 1e-6;
  EXPECT_TRUE(((mean - w).abs() <= bound).all().item<bool>());
  // ...whereas a biased operator (no 1/(1-p) rescaling) would be off by 20%.
  EXPECT_FALSE(((mean * (1 - rate) - w).abs() <= bound).all().item<bool>());
}

TEST(QuantNoise, EachCallDrawsAFreshMaskAndManualSeedRepeatsIt) {
  auto w = torch::randn({32, 64});
  auto layout = BlockLayout::linear({32, 64}, 8);
  torch::manual_seed(7);
  auto first = qnoise::quant_noise(w, layout, 0.3, NoiseFunction::pq());
  auto second = qnoise::quant_noise(w, layout, 0.3, NoiseFunction::pq());
  EXPECT_FALSE(torch::equal(first, second));
  torch::manual_seed(7);
  EXPECT_TRUE(torch::equal(qnoise::quant_noise(w, layout, 0.3, NoiseFunction::pq()), first));
}

TEST(QuantNoise, GradientPassesStraightThroughNoisedBlocksIncluded) {
  torch::manual_seed(3);
  auto layout = BlockLayout::linear({8, 16}, 4);
  auto codebook = torch::randn({5, 4});
  for (const auto& function : {NoiseFunction::pq(), int_noise(8), int_noise(4), NoiseFunction::pq_exact(codebook)}) {
    auto w = torch::randn({8, 16}, torch::requires_grad());
    const double rate = function.kind == qnoise::NoiseKind::PQ ? 0.5 : 1.0;
    auto noisy = qnoise::quant_noise(w, layout, rate, function);
    auto upstream = torch::randn({8, 16});
    noisy.backward(upstream);
    EXPECT_TRUE(torch::equal(w.grad(), upstream)) << function.name();
  }
}

TEST(QuantNoise, TheParameterIsNeverModified) {
  auto w = torch::randn({32, 64}, torch::requires_grad());
  auto before = w.detach().clone();
  auto layout = BlockLayout::linear({32, 64}, 8);
  for (int i = 0; i < 20; ++i) {
    qnoise::quant_noise(w, layout, 0.5, NoiseFunction::pq()).sum().backward();
    qnoise::quant_noise(w, layout, 0.5, int_noise(4)).sum().backward();
  }
  EXPECT_TRUE(torch::equal(w.detach(), before));
}

TEST(QuantNoise, FusedKernelsMatchTheReferenceExactly) {
  torch::manual_seed(4);
  struct Case {
    BlockLayout layout;
    NoiseFunction function;
    double rate;
  };
  const std::vector<Case> cases = {
      {BlockLayout::linear({37, 24}, 8), NoiseFunction::pq(), 0.3},    // ragged block count
      {BlockLayout::linear({5, 7}, 1), NoiseFunction::pq(), 0.5},
      {BlockLayout::conv2d({6, 4, 3, 3}, 9), NoiseFunction::pq(), 0.1},
      {BlockLayout::linear({33, 40}, 1), int_noise(8), 0.5},
      {BlockLayout::linear({33, 40}, 4), int_noise(4), 0.7},
      {BlockLayout::embedding({50, 12}, 3), int_noise(4, /*symmetric=*/true), 0.4},
      {BlockLayout::linear({9, 16}, 2), int_noise(3, false, /*per_channel=*/false), 0.6},
  };
  for (const auto& c : cases) {
    auto w = torch::randn(c.layout.weight_shape()) * 3;
    for (uint64_t seed : {1ULL, 99ULL}) {
      auto fused = qnoise::quant_noise_with_seed(w, c.layout, c.rate, c.function, seed);
      auto mask = qnoise::quant_noise_mask(c.layout, c.rate, seed);
      auto reference = qnoise::apply_noise_reference(w, c.layout, mask, c.rate, c.function);
      EXPECT_TRUE(torch::equal(fused, reference)) << c.layout.describe() << " " << c.function.name();
      // A non-contiguous weight takes the reference path and gives the same result.
      auto strided = w.transpose(0, 1).contiguous().transpose(0, 1);
      ASSERT_FALSE(strided.is_contiguous());
      EXPECT_TRUE(torch::equal(qnoise::quant_noise_with_seed(strided, c.layout, c.rate, c.function, seed), fused));
    }
  }
}

TEST(QuantNoise, MaskHasRatePAndIsAFunctionOfTheSeed) {
  auto layout = BlockLayout::linear({1000, 400}, 4);
  for (double rate : {0.0, 0.05, 0.5, 1.0}) {
    auto mask = qnoise::quant_noise_mask(layout, rate, 42);
    const double n = layout.n_blocks();
    EXPECT_NEAR(mask.sum().item<double>(), n * rate, 5 * std::sqrt(n * rate * (1 - rate)) + 1e-9);
  }
  EXPECT_TRUE(torch::equal(qnoise::quant_noise_mask(layout, 0.3, 5), qnoise::quant_noise_mask(layout, 0.3, 5)));
  EXPECT_FALSE(torch::equal(qnoise::quant_noise_mask(layout, 0.3, 5), qnoise::quant_noise_mask(layout, 0.3, 6)));
}

TEST(QuantNoise, ScalarNoiseReplacesOnlyChosenWeights) {
  torch::manual_seed(5);
  auto w = torch::randn({64, 64});
  auto layout = BlockLayout::linear({64, 64}, 1);
  auto mask = qnoise::quant_noise_mask(layout, 0.25, 11).reshape({64, 64});
  auto noisy = qnoise::quant_noise_with_seed(w, layout, 0.25, int_noise(4), 11);
  EXPECT_TRUE(torch::equal(noisy.index({~mask}), w.index({~mask})));
  EXPECT_TRUE(torch::equal(noisy.index({mask}), full_fake_quant(w, 4).index({mask})));
}

TEST(QuantNoise, PqExactReplacesChosenBlocksByTheirNearestCentroid) {
  torch::manual_seed(6);
  auto w = torch::randn({32, 16});
  auto layout = BlockLayout::linear({32, 16}, 4);
  qnoise::ProductQuantizer pq(4, qnoise::ProductQuantizerOptions().set_n_centroids(16).set_seed(1));
  auto blocks = layout.to_blocks(w);
  pq.train(blocks);
  auto function = NoiseFunction::pq_exact(pq.codebook());
  // Rate 1 (PQ QAT): every block is its centroid.
  auto all = qnoise::quant_noise(w, layout, 1.0, function);
  EXPECT_TRUE(torch::allclose(layout.to_blocks(all), pq.decode(pq.compute_codes(blocks))));
  auto mask = qnoise::quant_noise_mask(layout, 0.5, 3);
  auto half = layout.to_blocks(qnoise::quant_noise_with_seed(w, layout, 0.5, function, 3));
  EXPECT_TRUE(torch::equal(half.index({~mask}), blocks.index({~mask})));
  EXPECT_TRUE(torch::allclose(half.index({mask}), layout.to_blocks(all).index({mask})));
}

TEST(QuantNoise, BadArgumentsAreClearErrors) {
  auto w = torch::randn({8, 16});
  auto layout = BlockLayout::linear({8, 16}, 4);
  EXPECT_THROW(qnoise::quant_noise(w, layout, -0.1, NoiseFunction::pq()), qnoise::Error);
  EXPECT_THROW(qnoise::quant_noise(w, layout, 1.5, NoiseFunction::pq()), qnoise::Error);
  EXPECT_THROW(qnoise::quant_noise(w, layout, 1.0, NoiseFunction::pq()), qnoise::Error);
  EXPECT_THROW(qnoise::quant_noise(torch::randn({16, 8}), layout, 0.1, NoiseFunction::pq()), qnoise::Error);
  EXPECT_THROW(qnoise::quant_noise(w, layout, 0.1, NoiseFunction::pq_exact(torch::randn({4, 3}))), qnoise::Error);
  EXPECT_THROW(NoiseFunction::parse("int9"), qnoise::Error);
  EXPECT_THROW(NoiseFunction::parse("int"), qnoise::Error);
  EXPECT_THROW(NoiseFunction::parse("gaussian"), qnoise::Error);
  EXPECT_THROW(NoiseFunction::parse("pq-exact"), qnoise::Error);
  EXPECT_EQ(NoiseFunction::parse("int4").scalar.bits, 4);
  EXPECT_EQ(NoiseFunction::parse("pq").kind, qnoise::NoiseKind::PQ);
}

TEST(QuantNoise, WorkspaceIsReusedOnlyOnceNothingElseHoldsIt) {
  auto w = torch::randn({32, 64}, torch::requires_grad());
  auto layout = BlockLayout::linear({32, 64}, 8);
  torch::Tensor workspace;
  auto first = qnoise::quant_noise(w, layout, 0.3, NoiseFunction::pq(), true, &workspace);
  const auto first_values = first.detach().clone();
  // `first` is still alive: the next draw must not overwrite it.
  auto second = qnoise::quant_noise(w, layout, 0.3, NoiseFunction::pq(), true, &workspace);
  EXPECT_NE(first.data_ptr(), second.data_ptr());
  EXPECT_TRUE(torch::equal(first, first_values));
  // Once a step's tensors and graph are gone, its buffer is written again.
  const void* second_buffer = second.data_ptr();
  second.sum().backward();
  second = torch::Tensor();
  auto third = qnoise::quant_noise(w, layout, 0.3, NoiseFunction::pq(), true, &workspace);
  EXPECT_EQ(third.data_ptr(), second_buffer);
  third.sum().backward();
  EXPECT_TRUE(torch::equal(w.grad(), torch::full({32, 64}, 2.0f)));  // from second and third
}
