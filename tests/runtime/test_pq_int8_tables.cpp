// PQ layers with int8 activations look up int8 tables of integer products (pq_lut_kernels.h,
// pq_int8_lut_group_*): exact when the tables are whole steps, within the rounding bounds of the
// float product otherwise, and the AVX2 and AVX-512 kernels give the reference's result bit for bit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "qnoise/compressed_weight.h"
#include "qnoise/packed_linear.h"
#include "qnoise/runtime_options.h"
#include "runtime/packed_linear_fixture.h"

namespace {

// Its layers are built with int8 activations (options_for(path, true)) unless a test compares
// them with float activations.
class PqInt8TablesTest : public PackedLinearTest {};

// A PQ weight [out, in] over `centroids` with random codes.
qnoise::CompressedWeight pq_weight(int64_t out, int64_t in, int64_t d, int64_t k, const torch::Tensor& centroids) {
  const auto codes = torch::randint(0, k, {out * in / d}, torch::kLong).to(torch::kByte);
  return qnoise::compress_pq(qnoise::BlockLayout::linear({out, in}, d), centroids, codes);
}

}  // namespace

TEST_F(PqInt8TablesTest, ExactOnASmallCaseOfWholeSteps) {
  // Centroids {0, (127, 127, 1, 0)} (scale 1) and blocks whose largest |x| is 127 (scale 2^0):
  // the integer tables are {0, 16320} and {0, -16192}, the step 2^6 (16320 = 255 * 64) and the
  // second table's levels {253, 0}, so all four code pairs give the float product exactly.
  const auto centroids = torch::tensor({{0.0f, 0.0f, 0.0f, 0.0f}, {127.0f, 127.0f, 1.0f, 0.0f}});
  const auto codes = torch::tensor({0, 0, 1, 0, 0, 1, 1, 1}, torch::kByte);  // row o: (o & 1, o >> 1)
  const auto weight = qnoise::compress_pq(qnoise::BlockLayout::linear({4, 8}, 4), centroids, codes);
  const auto x = torch::tensor({127.0f, 1.0f, 64.0f, 0.0f, -127.0f, 0.0f, -63.0f, 0.0f});
  const auto expected = torch::tensor({0.0f, 16320.0f, -16192.0f, 128.0f});
  ASSERT_TRUE(torch::equal(torch::mv(qnoise::PackedPqLinear(weight).decode(), x), expected));
  for (auto path : available_kernel_paths()) {
    const qnoise::PackedPqLinear layer(weight, options_for(path, true));
    EXPECT_TRUE(torch::equal(layer.forward(x), expected)) << qnoise::to_string(path) << " " << layer.forward(x);
  }
}

TEST_F(PqInt8TablesTest, WithinTheRoundingBoundsOfTheFloatProduct) {
  torch::manual_seed(22);
  const int64_t out = 520, in = 512, d = 8, k = 256;  // int8 tables from 2K rows up
  const auto centroids = torch::randn({k, d});
  const qnoise::PackedPqLinear layer(pq_weight(out, in, d, k, centroids),
                                    options_for(qnoise::KernelPath::Reference, true));
  const auto x = torch::randn({in}) * torch::rand({in}) * 4;  // blocks of different sizes
  const auto y = layer.forward(x).to(torch::kDouble);
  const auto exact = torch::mv(layer.decode().to(torch::kDouble), x.to(torch::kDouble));
  // Per block: activations off by at most s_j / 2 (s_j a power of two below 2 a_j / 127) and
  // centroids by s_c / 2 in each of d products, then the table rounding, at most half a step, the
  // step a power of two below twice the widest table's range / 255 (the integer tables' range is
  // at most twice the product error wider than the float one).
  const auto xd = x.to(torch::kDouble).view({in / d, d});
  const auto cd = centroids.to(torch::kDouble);
  const double c_max = cd.abs().max().item<double>(), s_c = c_max / 127;
  const auto s_x = 2 * std::get<0>(xd.abs().max(1)) / 127;
  const auto product_error = d * (c_max * s_x / 2 + std::get<0>(xd.abs().max(1)) * s_c / 2 + s_c * s_x / 4);
  const auto tables = torch::mm(xd, cd.t());
  const double widest = (std::get<0>(tables.max(1)) - std::get<0>(tables.min(1)) + 2 * product_error).max().item<double>();
  const double bound = product_error.sum().item<double>() + (in / d) * 2 * widest / 255 / 2 + 1e-3;
  EXPECT_LE((y - exact).abs().max().item<double>(), bound);
  EXPECT_GT((y - exact).abs().max().item<double>(), 1e-4);  // it does round
  // and much less than the bound on average: rounding errors of 64 blocks mostly cancel
  EXPECT_LE((y - exact).abs().mean().item<double>(), bound / 4);
}

TEST_F(PqInt8TablesTest, SimdKernelsGiveTheReferenceBitForBitOnRaggedShapes) {
  const auto paths = available_kernel_paths();
  if (paths.size() < 2) GTEST_SKIP() << "no AVX2 on this CPU";
  // rows below, at and past the 64-row chunk and not whole row groups of 8 (at least 2K rows, or
  // the layer keeps float tables); groups of blocks not a multiple of 8 (K = 256, d = 8: 16 blocks
  // a group, in = 264: 16 + 16 + 1; K = 100: 40; K = 16 or less: 256, several groups at in = 2056,
  // d = 4); K <= 128 (one table half) and K > 128; blocks quantized 16 / d to a vector (d = 4, 8,
  // 16) and one at a time (d = 2, 3, 20); rows in the AVX2 kernel's steps of 32 and 8-row rests;
  // long blocks (d = 1040, 1044: the AVX2 kernel's products in slices of 8 input pairs and rests).
  struct Shape {
    int64_t out, in, d, k;
  };
  const std::vector<Shape> shapes = {{8, 64, 8, 4},    {9, 48, 2, 4},      {70, 200, 8, 32}, {130, 1032, 8, 64},
                                     {200, 96, 4, 100}, {65, 2056, 4, 3},  {64, 1000, 8, 16}, {520, 264, 8, 256},
                                     {600, 96, 4, 200}, {96, 48, 16, 40},  {48, 60, 3, 20},   {66, 80, 20, 30},
                                     {16, 2080, 1040, 5}, {24, 2088, 1044, 6}};
  uint64_t seed = 30;
  for (const auto& shape : shapes) {
    torch::manual_seed(++seed);
    const auto weight = pq_weight(shape.out, shape.in, shape.d, shape.k, torch::randn({shape.k, shape.d}));
    std::vector<std::unique_ptr<qnoise::PackedPqLinear>> layers;  // one per path in `paths`
    for (auto path : paths) layers.push_back(std::make_unique<qnoise::PackedPqLinear>(weight, options_for(path, true)));
    for (int64_t batch : {1, 3}) {
      // magnitudes from 2^-30 to 2^30 (each block its own power-of-two scale) and a zero block
      auto x = torch::randn({batch, shape.in}) * torch::exp2(torch::randint(-30, 31, {batch, shape.in}).to(torch::kFloat));
      x.narrow(1, 0, shape.d).zero_();
      const auto bias = torch::randn({shape.out});
      const auto row_scale = torch::rand({shape.out}) + 0.5;
      const std::string what = std::to_string(shape.out) + "x" + std::to_string(shape.in) + " d " +
                               std::to_string(shape.d) + " K " + std::to_string(shape.k) + " batch " +
                               std::to_string(batch);
      for (int threads : {1, 2}) {  // the thread count sets the order partial outputs are added in
        at::set_num_threads(threads);
        const auto reference = layers[0]->forward(x, bias, row_scale);
        for (size_t p = 1; p < paths.size(); ++p) {
          if (paths[p] == qnoise::KernelPath::Avx2 && batch > 1) continue;  // float tables there
          EXPECT_TRUE(torch::equal(layers[p]->forward(x, bias, row_scale), reference))
              << what << " on " << threads << " threads, " << qnoise::to_string(paths[p]);
        }
      }
    }
  }
}

TEST_F(PqInt8TablesTest, NonFiniteActivationsGiveNaN) {
  torch::manual_seed(23);
  const auto weight = pq_weight(16, 64, 8, 8, torch::randn({8, 8}));
  for (float bad : {NAN, INFINITY}) {
    auto x = torch::randn({64});
    x[37] = bad;
    for (auto path : available_kernel_paths()) {
      const qnoise::PackedPqLinear layer(weight, options_for(path, true));
      EXPECT_TRUE(layer.forward(x).isnan().all().item<bool>()) << qnoise::to_string(path) << " " << bad;
    }
  }
}

TEST_F(PqInt8TablesTest, EveryBatchSizeComputesTheSameFunction) {
  // Large batches too (no float tables shared across columns): each batch row gives what it gives
  // alone. Not on the AVX2 path, which keeps float tables for batches.
  torch::manual_seed(24);
  const auto weight = pq_weight(40, 128, 8, 16, torch::randn({16, 8}));
  const auto x = torch::randn({70, 128});
  at::set_num_threads(1);
  for (auto path : available_kernel_paths()) {
    const qnoise::PackedPqLinear with(weight, options_for(path, true)), without(weight, options_for(path, false));
    auto run = [&](const torch::Tensor& input, bool on) { return (on ? with : without).forward(input); };
    const auto batched = run(x, true);
    if (path == qnoise::KernelPath::Avx2) {
      EXPECT_TRUE(torch::equal(batched, run(x, false)));
      EXPECT_FALSE(torch::equal(run(x[0], true), run(x[0], false)));  // int8 tables at batch 1
      continue;
    }
    EXPECT_FALSE(torch::equal(batched, run(x, false))) << qnoise::to_string(path);
    for (int64_t b : {0, 31, 69}) EXPECT_TRUE(torch::equal(batched[b], run(x[b], true))) << qnoise::to_string(path) << " row " << b;
  }
}

TEST_F(PqInt8TablesTest, LayersOfFewRowsKeepFloatTables) {
  // Fewer than 2K rows: building and rounding the tables would cost more than the lookups save.
  torch::manual_seed(25);
  const auto weight = pq_weight(100, 128, 8, 64, torch::randn({64, 8}));
  const auto x = torch::randn({3, 128});
  for (auto path : available_kernel_paths()) {
    const auto with = qnoise::PackedPqLinear(weight, options_for(path, true)).forward(x);
    const auto without = qnoise::PackedPqLinear(weight, options_for(path, false)).forward(x);
    EXPECT_TRUE(torch::equal(with, without)) << qnoise::to_string(path);
  }
}
