// Int8 activations for int8 and int4 weights (packed_linear.h, RuntimeOptions::int8_activations): the product of the
// codes with 7-bit activations is exact in integers, the AVX2 and AVX-512 VNNI kernels give the
// reference's result bit for bit, and the result stays within the activations' rounding of the float product.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "qnoise/compressed_weight.h"
#include "qnoise/packed_linear.h"
#include "kernels/cpu_features.h"
#include "qnoise/runtime_options.h"
#include "runtime/packed_linear_fixture.h"
#include "kernels/scalar_linear_kernels.h"

namespace {

// Its layers are built with int8 activations: options_for(path, true).
class Int8ActivationsTest : public PackedLinearTest {};

// The activations as the kernel quantizes them (per batch row, 63 levels, the level computed in
// float as x * (63 / max|x|): in double a value near a half step may round the other way), back in
// double.
torch::Tensor quantized(const torch::Tensor& x) {
  const auto largest = x.abs().amax(1, /*keepdim=*/true);
  const auto levels = (x * (63.0f / largest)).round().clamp(-63, 63).to(torch::kDouble);
  return levels * (largest / 63.0f).to(torch::kDouble);
}

}  // namespace

TEST_F(Int8ActivationsTest, HandWorkedExample) {
  // w = (q - 128) * 0.5 = [-64, 63.5, 0]; x = [1, -1, 0.5] -> levels [63, -63, 32] (31.5 rounds to
  // even) of 1/63; sum q * level = -16065 + 4096, minus 128 * 32: y = 0.5 / 63 * -16065 = -127.5.
  qnoise::CompressedWeight weight;
  weight.scheme = qnoise::WeightScheme::Int8;
  weight.shape = {1, 3};
  weight.codes = torch::tensor({0, 255, 128}, torch::kByte);
  weight.scale = torch::tensor({0.5f});
  weight.zero_point = torch::tensor({128}, torch::kByte);
  for (auto path : available_kernel_paths()) {
    const qnoise::PackedInt8Linear layer(weight, options_for(path, true));
    EXPECT_NEAR(layer.forward(torch::tensor({1.0f, -1.0f, 0.5f})).item<float>(), -127.5f, 1e-4);
    EXPECT_EQ(layer.forward(torch::zeros({3})).item<float>(), 0.0f);  // all-zero activations
    EXPECT_TRUE(std::isnan(layer.forward(torch::tensor({1.0f, NAN, 0.5f})).item<float>()));
  }
}

TEST_F(Int8ActivationsTest, Int4AtItsLargestCodesAndActivationsIsExact) {
  // Every code 15 and every activation at level +-63: the largest partial sums the int4 kernels
  // keep in int16 (a line of 128 inputs in AVX2's) before widening. x = +-63 (scale 1): y = 15 * 63
  // * 1024 * sign exactly.
  qnoise::CompressedWeight weight;
  weight.scheme = qnoise::WeightScheme::Int4;
  weight.shape = {2, 1024};
  auto codes = torch::zeros({1024}, torch::kByte);
  codes.narrow(0, 0, 512).fill_(0xFF);  // row 0: every code 15; row 1: 0
  weight.codes = codes;
  weight.scale = torch::ones({2});
  weight.zero_point = torch::zeros({2}, torch::kByte);
  for (auto path : available_kernel_paths()) {
    const qnoise::PackedInt4Linear layer(weight, options_for(path, true));
    for (float sign : {1.0f, -1.0f}) {
      const auto y = layer.forward(torch::full({1024}, 63 * sign));
      EXPECT_EQ(y[0].item<float>(), sign * 967680.0f) << qnoise::to_string(path);
      EXPECT_EQ(y[1].item<float>(), 0.0f) << qnoise::to_string(path);
    }
  }
}

// The layer of an int<bits> `weight`, built with `options`.
std::unique_ptr<qnoise::PackedLinearBase> scalar_layer(const qnoise::CompressedWeight& weight, int bits,
                                                       const qnoise::RuntimeOptions& options) {
  if (bits == 8) return std::make_unique<qnoise::PackedInt8Linear>(weight, options);
  return std::make_unique<qnoise::PackedInt4Linear>(weight, options);
}

TEST_F(Int8ActivationsTest, KernelsAreExactIntegerProductsOnRaggedShapes) {
  // in below, at and above the 32-input step, the 64-input step and the 64-byte line (64 int8 or
  // 128 int4 inputs); rows not a multiple of 4.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1},   {5, 31},  {7, 32},   {13, 33},
                                                           {4, 64},  {9, 100}, {5, 127},  {6, 160},
                                                           {8, 192}, {66, 257}, {3, 1030}};
  uint64_t seed = 0;
  for (int bits : {8, 4}) {
    for (const auto& [out, in] : shapes) {
      torch::manual_seed(++seed);
      auto values = torch::randn({out, in});
      values[0] = values[0].abs() * 4;  // codes at 255 (the int16 pair sums' worst case)
      const auto weight = qnoise::compress_scalar(values, bits);
      // One layer per kernel path, in the order of available_kernel_paths() (reference first).
      std::vector<std::unique_ptr<qnoise::PackedLinearBase>> layers;
      for (auto path : available_kernel_paths()) layers.push_back(scalar_layer(weight, bits, options_for(path, true)));
      const qnoise::PackedLinearBase& reference_layer = *layers.front();
      for (int64_t batch : {1, 3, 17}) {
        const auto x = torch::randn({batch, in}) * 3;
        x[0][0] = -7.5;  // a row whose largest activation is negative
        const auto bias = torch::randn({out});
        const auto exact =
            torch::mm(quantized(x), reference_layer.decode().to(torch::kDouble).t()) + bias.to(torch::kDouble);
        at::set_num_threads(1);
        const auto reference = reference_layer.forward(x, bias);
        const std::string what = "int" + std::to_string(bits) + " " + std::to_string(out) + "x" + std::to_string(in) +
                                 " batch " + std::to_string(batch);
        const double error = (reference.to(torch::kDouble) - exact).abs().max().item<double>();
        EXPECT_LE(error, 1e-5 * exact.abs().max().item<double>() + 1e-5) << what;
        for (int threads : {1, 2}) {
          at::set_num_threads(threads);
          for (const auto& layer : layers) {
            EXPECT_TRUE(torch::equal(layer->forward(x, bias), reference))
                << what << " " << qnoise::to_string(layer->options().kernel_path) << " on " << threads << " threads";
          }
        }
      }
    }
  }
}

TEST(QuantizeActivations, Avx2MatchesTheReferenceBitForBit) {
  if (!qnoise::kernels::cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  torch::manual_seed(13);
  for (int64_t n : {0, 1, 7, 8, 9, 31, 64, 1000}) {
    for (int variant = 0; variant < 5; ++variant) {
      auto x = torch::randn({n}) * 5;
      if (n > 0 && variant == 1) x = torch::round(x * 2) / 2 * (63.0f / x.abs().max());  // half steps
      if (n > 0 && variant == 2) x[n - 1] = NAN;                                        // in the tail
      if (n > 0 && variant == 3) x[0] = -INFINITY;
      if (variant == 4) x.zero_();
      std::vector<int8_t> expected(n + 1, 99), got(n + 1, 99);
      float expected_scale = 0, got_scale = 0;
      const float* data = x.data_ptr<float>();
      const int32_t expected_sum = qnoise::kernels::quantize_activations(data, n, expected.data(), &expected_scale);
      const int32_t got_sum = qnoise::kernels::quantize_activations_avx2(data, n, got.data(), &got_scale);
      const std::string what = "n " + std::to_string(n) + " variant " + std::to_string(variant);
      EXPECT_EQ(got, expected) << what;  // and the byte after the row is left alone
      EXPECT_EQ(got_sum, expected_sum) << what;
      EXPECT_TRUE(got_scale == expected_scale || (std::isnan(got_scale) && std::isnan(expected_scale))) << what;
      EXPECT_EQ(std::isnan(expected_scale), n > 0 && (variant == 2 || variant == 3)) << what;
    }
  }
}

TEST_F(Int8ActivationsTest, StaysWithinTheActivationRoundingOfTheFloatProduct) {
  torch::manual_seed(11);
  const qnoise::PackedInt8Linear layer(qnoise::compress_scalar(torch::randn({48, 200}), 8),
                                      options_for(qnoise::KernelPath::Auto, true));
  const auto w = layer.decode().to(torch::kDouble);
  const auto x = torch::randn({4, 200});
  const auto y = layer.forward(x).to(torch::kDouble);
  const auto float_product = torch::mm(x.to(torch::kDouble), w.t());
  // Each activation moves by at most half a step, max|x| / 126.
  const auto half_step = x.abs().amax(1, true).to(torch::kDouble) / 126.0;
  const auto bound = half_step * w.abs().sum(1).unsqueeze(0) + 1e-5;
  EXPECT_TRUE(((y - float_product).abs() <= bound).all().item<bool>());
  // And it does round: the result is not the float product.
  EXPECT_GT((y - float_product).abs().max().item<double>(), 1e-4);
}

// (PQ layers: test_pq_int8_tables.cpp.)
TEST_F(Int8ActivationsTest, EveryBatchSizeUsesIt) {
  // Batches at and above the GEMM switch point too: each batch row gives what it gives alone.
  torch::manual_seed(12);
  const auto values = torch::randn({20, 64});
  const auto x = torch::randn({options_for(qnoise::KernelPath::Auto).tuning.scalar_gemm_min_batch + 8, 64});
  for (int bits : {8, 4}) {
    const auto weight = qnoise::compress_scalar(values, bits);
    const auto with = scalar_layer(weight, bits, options_for(qnoise::KernelPath::Auto, true));
    const auto without = scalar_layer(weight, bits, options_for(qnoise::KernelPath::Auto, false));
    auto run = [&](const torch::Tensor& input, bool on) { return (on ? with : without)->forward(input); };
    const auto batched = run(x, true);
    EXPECT_FALSE(torch::equal(batched, run(x, false)));
    for (int64_t b : {int64_t{0}, x.size(0) - 1}) EXPECT_TRUE(torch::equal(batched[b], run(x[b], true))) << "row " << b;
  }
}
