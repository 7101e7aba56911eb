// int4 weights times fixed-point activations (int4_fixed_point.h): the levels and their digits, the
// AVX2 kernel against the reference bit for bit, and the layer within the activations' rounding of
// the float product.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "qnoise/compressed_weight.h"
#include "qnoise/packed_linear.h"
#include "kernels/cpu_features.h"
#include "kernels/int4_fixed_point.h"
#include "runtime/packed_linear_fixture.h"

namespace {

namespace k = qnoise::kernels;

// The header's digit order, written out independently: byte offset of d1 for input i, and the
// distance to d2 and d3.
std::pair<int64_t, int64_t> digit_place(int64_t i, int64_t n) {
  const int64_t lines_end = n / 128 * 128;
  if (i < lines_end) {
    const int64_t t = i % 64;
    const int64_t within = t < 16 ? t : t < 32 ? 32 + t - 16 : t < 48 ? 16 + t - 32 : 48 + t - 48;
    return {i / 64 * 192 + within, 64};
  }
  return {3 * lines_end + (i - lines_end) / 32 * 96 + (i - lines_end) % 32, 32};
}

// Digits of `levels` in the kernel's order, by integer division (not the kernel's float arithmetic).
std::vector<int8_t> digits_of(const std::vector<int32_t>& levels) {
  const int64_t n = static_cast<int64_t>(levels.size());
  std::vector<int8_t> digits(k::fixed_point_digit_bytes(n));
  for (int64_t i = 0; i < n / 32 * 32; ++i) {
    const int32_t level = levels[i];
    const int32_t d1 = static_cast<int32_t>(std::lround(level / 64516.0));
    const int32_t d2 = static_cast<int32_t>(std::lround((level - 64516 * d1) / 254.0));
    const int32_t d3 = level - 64516 * d1 - 254 * d2;
    const auto [offset, stride] = digit_place(i, n);
    digits[offset] = static_cast<int8_t>(d1);
    digits[offset + stride] = static_cast<int8_t>(d2);
    digits[offset + 2 * stride] = static_cast<int8_t>(d3);
  }
  return digits;
}

// A weight of `out` rows of int4 codes in the kernel layout, with its affine parameters.
struct Int4Weight {
  std::vector<uint8_t> codes;
  std::vector<float> scale, zero_point;
  k::ScalarLinearWeight view;
  Int4Weight(const torch::Tensor& q, const torch::Tensor& scales, const torch::Tensor& zero_points) {
    const int64_t out = q.size(0), in = q.size(1);
    const int64_t row_bytes = k::int4_row_bytes(in);
    codes.assign(out * row_bytes, 0);
    const auto q_access = q.accessor<uint8_t, 2>();
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) k::set_int4_code(codes.data() + o * row_bytes, i, q_access[o][i]);
    scale.assign(scales.data_ptr<float>(), scales.data_ptr<float>() + out);
    zero_point.assign(zero_points.data_ptr<float>(), zero_points.data_ptr<float>() + out);
    view.codes = codes.data();
    view.bits = 4;
    view.in = in;
    view.row_bytes = row_bytes;
    view.scale = scale.data();
    view.zero_point = zero_point.data();
  }
};

int64_t sum_of(const std::vector<int32_t>& levels) {
  int64_t sum = 0;
  for (int32_t l : levels) sum += l;
  return sum;
}

}  // namespace

TEST(Int4FixedPoint, LevelsOfAHandWorkedRow) {
  // max |x| = 2: step 2 / 8193532; x = 1 is half the top level, 0.5 a quarter (8193532 / 4 =
  // 2048383 exactly), -2 the bottom.
  const std::vector<float> x = {1.0f, -2.0f, 0.5f, 0.0f};
  std::vector<int32_t> levels(4, 99);
  float step = 0;
  int64_t sum = 0;
  ASSERT_TRUE(k::fixed_point_activations(x.data(), 4, levels.data(), &step, &sum));
  EXPECT_EQ(levels, (std::vector<int32_t>{4096766, -8193532, 2048383, 0}));
  EXPECT_EQ(sum, 4096766 - 8193532 + 2048383);
  EXPECT_EQ(step, 2.0f / 8193532);
  const std::vector<float> with_nan = {1.0f, NAN}, with_infinity = {-INFINITY};
  EXPECT_FALSE(k::fixed_point_activations(with_nan.data(), 2, levels.data(), &step, &sum));
  EXPECT_FALSE(k::fixed_point_activations(with_infinity.data(), 1, levels.data(), &step, &sum));
}

TEST(Int4FixedPoint, Avx2LevelsMatchTheReferenceAndItsDigitsRebuildThem) {
  if (!k::cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  torch::manual_seed(21);
  for (int64_t n : {0, 1, 7, 16, 31, 32, 33, 100, 128, 129, 192, 300, 1000}) {
    for (int variant = 0; variant < 5; ++variant) {
      auto x = torch::randn({n}) * 3;
      if (n > 0 && variant == 1) {
        // The digits' ties, exactly: with the top level as max|x| the step is 1, so each level is
        // its x, here m * 254^2 / 2 (a tie of d1 for odd m) or, for even m, that plus or minus 127
        // (a tie of d2).
        const auto m = torch::randint(-253, 254, {n}).to(torch::kFloat);
        x = m * 32258.0f + torch::randint(-1, 2, {n}).to(torch::kFloat) * 127.0f;
        x[0] = static_cast<float>(k::kFixedLevels);
      }
      if (n > 0 && variant == 2) x[n - 1] = NAN;
      if (n > 0 && variant == 3) x[0] = INFINITY;
      if (variant == 4) x.zero_();
      const float* data = x.data_ptr<float>();
      std::vector<int32_t> expected(n), got(n);
      std::vector<int8_t> digits(k::fixed_point_digit_bytes(n));
      float expected_step = -1, got_step = -1;
      int64_t expected_sum = -1, got_sum = -1;
      const bool expected_ok = k::fixed_point_activations(data, n, expected.data(), &expected_step, &expected_sum);
      const bool got_ok =
          k::fixed_point_activations_avx2(data, n, got.data(), digits.data(), &got_step, &got_sum);
      const std::string what = "n " + std::to_string(n) + " variant " + std::to_string(variant);
      ASSERT_EQ(got_ok, expected_ok) << what;
      EXPECT_EQ(expected_ok, !(n > 0 && (variant == 2 || variant == 3))) << what;
      if (!expected_ok) continue;
      EXPECT_EQ(got, expected) << what;
      if (variant == 1)
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(expected[i], static_cast<int32_t>(data[i])) << what << " input " << i;
      EXPECT_EQ(got_sum, expected_sum) << what;
      EXPECT_EQ(got_step, expected_step) << what;
      for (int64_t i = 0; i < n / 32 * 32; ++i) {
        const auto [offset, stride] = digit_place(i, n);
        const int32_t d1 = digits[offset], d2 = digits[offset + stride], d3 = digits[offset + 2 * stride];
        EXPECT_EQ(64516 * d1 + 254 * d2 + d3, expected[i]) << what << " input " << i;
        EXPECT_TRUE(std::abs(d1) <= 127 && std::abs(d2) <= 127 && std::abs(d3) <= 127) << what << " input " << i;
      }
    }
  }
}

// The SIMD kernels this CPU runs.
std::vector<std::pair<std::string, decltype(&k::int4_fixed_point_matvec_avx2)>> simd_kernels() {
  std::vector<std::pair<std::string, decltype(&k::int4_fixed_point_matvec_avx2)>> kernels;
  if (k::cpu_has_avx2_fma()) kernels.emplace_back("avx2", k::int4_fixed_point_matvec_avx2);
  if (k::cpu_has_avx512_vnni_vbmi()) kernels.emplace_back("avx512", k::int4_fixed_point_matvec_avx512_vnni);
  return kernels;
}

TEST(Int4FixedPoint, SimdKernelsAreTheReferenceBitForBitOnRaggedShapes) {
  if (!k::cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  // in below, at and above the 32-input step, the 64-input half line and the 128-input line, and
  // past the int32 flush at 4096 inputs; rows not a multiple of the 2-row step or the 4-row group.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 1}, {3, 31}, {5, 32}, {2, 33}, {7, 64}, {4, 100}, {6, 127}, {9, 128}, {3, 160}, {5, 255},
      {4, 256}, {3, 300}, {2, 4096 + 32 + 5}, {5, 8192 + 128 + 64 + 7}};
  torch::manual_seed(22);
  for (const auto& [out, in] : shapes) {
    const auto q = torch::randint(0, 16, {out, in}).to(torch::kByte);
    const Int4Weight weight(q, torch::rand({out}) + 0.1f, torch::randint(0, 16, {out}).to(torch::kFloat));
    const auto drawn = torch::randint(-k::kFixedLevels, k::kFixedLevels + 1, {in}, torch::kInt);
    const std::vector<int32_t> levels(drawn.data_ptr<int32_t>(), drawn.data_ptr<int32_t>() + in);
    const auto digits = digits_of(levels);
    const float step = 3.0f / k::kFixedLevels;
    std::vector<float> expected(out, NAN);
    k::int4_fixed_point_matvec_reference(weight.view, levels.data(), sum_of(levels), step, 0, out, expected.data());
    for (const auto& [name, kernel] : simd_kernels()) {
      std::vector<float> got(out, NAN);
      kernel(weight.view, digits.data(), levels.data(), sum_of(levels), step, 0, out, got.data());
      EXPECT_EQ(got, expected) << name << " " << out << "x" << in;
      // And a row range starting past 0, as the threads split them.
      if (out > 2) {
        std::vector<float> part(out, NAN);
        kernel(weight.view, digits.data(), levels.data(), sum_of(levels), step, 1, out, part.data());
        EXPECT_TRUE(std::isnan(part[0]));
        EXPECT_TRUE(std::equal(part.begin() + 1, part.end(), expected.begin() + 1))
            << name << " " << out << "x" << in << " from row 1";
      }
    }
  }
}

TEST(Int4FixedPoint, LargestCodesAndDigitsAreExact) {
  if (!k::cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  // Every code 15 and every level 126 * 254^2 + 127 * 254 + 127 (each digit at its largest) or its
  // negative: the int16 line sums and the int32 accumulators at their bounds, over 8192 + 96
  // inputs (two flushes, then the 32-input steps). dot = 15 * level * in exactly.
  const int64_t in = 8192 + 96, out = 3;
  const int32_t top = 126 * 64516 + 127 * 254 + 127;
  auto q = torch::full({out, in}, 15, torch::kByte);
  q[2].fill_(0);
  const Int4Weight weight(q, torch::ones({out}), torch::tensor({0.0f, 15.0f, 0.0f}));
  for (int sign : {1, -1}) {
    const std::vector<int32_t> levels(in, sign * top);
    const auto digits = digits_of(levels);
    for (const auto& [name, kernel] : simd_kernels()) {
      std::vector<float> y(out);
      kernel(weight.view, digits.data(), levels.data(), sum_of(levels), 1.0f, 0, out, y.data());
      EXPECT_EQ(y[0], static_cast<float>(15.0 * sign * top * in)) << name;
      EXPECT_EQ(y[1], 0.0f) << name;  // (15 - zero point 15) * level
      EXPECT_EQ(y[2], 0.0f) << name;
    }
  }
}

class Int4FixedPointLayerTest : public PackedLinearTest {};

TEST_F(Int4FixedPointLayerTest, StaysWithinTheActivationRoundingOfTheFloatProduct) {
  if (!k::cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  torch::manual_seed(23);
  for (int64_t in : {40, 300, 1030}) {
    const auto weight = qnoise::compress_scalar(torch::randn({37, in}), 4);
    const auto w =
        qnoise::PackedInt4Linear(weight, options_for(qnoise::KernelPath::Reference)).decode().to(torch::kDouble);
    auto x = torch::randn({5, in});
    x[1] *= 1e-3;
    x[2][3] = 40;  // an outlier: the small activations keep 6e-8 of 40
    const auto float_product = torch::mm(x.to(torch::kDouble), w.t());
    // Each activation moves by at most half a step, max|x| / (2 * 8193532); then fp32 outputs.
    const auto half_step = x.abs().amax(1, true).to(torch::kDouble) / (2.0 * k::kFixedLevels);
    const auto bound = half_step * w.abs().sum(1).unsqueeze(0) + float_product.abs() * 1e-7;
    // (The reference path's fp32 sums, whose zero point cancels most of sum_i q_i x_i, miss this
    // bound by up to 2.5x on these rows.)
    for (auto path : available_kernel_paths()) {
      if (path == qnoise::KernelPath::Reference) continue;
      const qnoise::PackedInt4Linear layer(weight, options_for(path));
      const auto y = layer.forward(x).to(torch::kDouble);
      EXPECT_TRUE(((y - float_product).abs() <= bound).all().item<bool>())
          << qnoise::to_string(path) << " in " << in << ": "
          << ((y - float_product).abs() / bound).max().item<double>();
      // Each batch row alone gives what it gives in the batch.
      for (int64_t b = 0; b < x.size(0); ++b)
        EXPECT_TRUE(torch::equal(layer.forward(x[b]), y[b].to(torch::kFloat)))
            << qnoise::to_string(path) << " row " << b;
    }
  }
}

TEST_F(Int4FixedPointLayerTest, NonFiniteAndZeroActivations) {
  torch::manual_seed(24);
  const auto weight = qnoise::compress_scalar(torch::randn({6, 70}), 4);
  auto x = torch::randn({3, 70});
  x[0][69] = NAN;
  x[1][5] = -INFINITY;
  x[2].zero_();
  const auto bias = torch::randn({6});
  for (auto path : available_kernel_paths()) {
    const qnoise::PackedInt4Linear layer(weight, options_for(path));
    const auto y = layer.forward(x, bias);
    EXPECT_TRUE(y[0].isnan().all().item<bool>()) << qnoise::to_string(path);
    EXPECT_FALSE(y[1].isfinite().any().item<bool>()) << qnoise::to_string(path);
    EXPECT_TRUE(torch::equal(y[2], bias)) << qnoise::to_string(path);
  }
}
