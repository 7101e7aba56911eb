// PQ layers with int8 activations look up int8 tables (pq_lut_kernels.h, pq_int8_lut_group_*):
// exact when the tables are whole steps, within half a step per block of the float tables
// otherwise, and the AVX-512 kernel gives the reference's result bit for bit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "qnoise/compressed_weight.h"
#include "qnoise/packed_linear.h"
#include "runtime/linear_tuning.h"
#include "runtime/packed_linear_fixture.h"

namespace {

class PqInt8TablesTest : public PackedLinearTest {
 protected:
  void SetUp() override {
    PackedLinearTest::SetUp();
    qnoise::set_int8_activations(true);
  }
};

qnoise::PackedPqLinear pq_layer(int64_t out, int64_t in, int64_t d, int64_t k, const torch::Tensor& centroids) {
  const auto codes = torch::randint(0, k, {out * in / d}, torch::kLong).to(torch::kByte);
  return qnoise::PackedPqLinear(qnoise::compress_pq(qnoise::BlockLayout::linear({out, in}, d), centroids, codes));
}

}  // namespace

TEST_F(PqInt8TablesTest, ExactWhenEveryTableIsWholeSteps) {
  // d = 1, centroids {0, 1}: T_j = {0, x_j}, so with integer x and some |x_j| = 255 in every group
  // the step is 1 and the sums are the float product exactly. 600 blocks: three groups of <= 256.
  torch::manual_seed(21);
  const auto layer = pq_layer(70, 600, 1, 2, torch::tensor({{0.0f}, {1.0f}}));
  auto x = torch::randint(-255, 256, {600}).to(torch::kFloat);
  for (int64_t j = 0; j < 600; j += 50) x[j] = j % 100 == 0 ? 255.0f : -255.0f;
  const auto expected = torch::mv(layer.decode(), x);
  for (auto path : available_kernel_paths()) {
    qnoise::set_kernel_path(path);
    EXPECT_TRUE(torch::equal(layer.forward(x), expected)) << qnoise::to_string(path);
  }
}

TEST_F(PqInt8TablesTest, WithinHalfAStepPerBlockOfTheFloatTables) {
  torch::manual_seed(22);
  const int64_t out = 520, in = 512, d = 8, k = 256;  // int8 tables from 2K rows up
  const auto centroids = torch::randn({k, d});
  const auto layer = pq_layer(out, in, d, k, centroids);
  const auto x = torch::randn({in});
  qnoise::set_kernel_path(qnoise::KernelPath::Reference);
  const auto y = layer.forward(x).to(torch::kDouble);
  const auto exact = torch::mv(layer.decode().to(torch::kDouble), x.to(torch::kDouble));
  // Every group's step is at most the widest block table's range / 255.
  const auto tables = torch::mm(x.view({in / d, d}).to(torch::kDouble), centroids.to(torch::kDouble).t());
  const double widest = (std::get<0>(tables.max(1)) - std::get<0>(tables.min(1))).max().item<double>();
  const double bound = (in / d) * widest / 255 / 2 + 1e-4;
  EXPECT_LE((y - exact).abs().max().item<double>(), bound);
  EXPECT_GT((y - exact).abs().max().item<double>(), 1e-4);  // it does round
  // and much less than the bound on average: rounding errors of 64 blocks mostly cancel
  EXPECT_LE((y - exact).abs().mean().item<double>(), bound / 4);
}

TEST_F(PqInt8TablesTest, Avx512GivesTheReferenceBitForBitOnRaggedShapes) {
  const auto paths = available_kernel_paths();
  if (paths.back() != qnoise::KernelPath::Avx512) GTEST_SKIP() << "no AVX-512 VNNI/VBMI on this CPU";
  // rows below, at and past the 64-row chunk and not whole row groups of 8 (at least 2K rows, or
  // the layer keeps float tables); groups of blocks not a multiple of 8 (K = 256, d = 8: 16 blocks
  // a group, in = 264: 16 + 16 + 1; K = 100: 40; K = 16 or less: 256, several groups at in = 2056,
  // d = 4); K <= 128 (one table half) and K > 128.
  struct Shape {
    int64_t out, in, d, k;
  };
  const std::vector<Shape> shapes = {{8, 64, 8, 4},    {9, 48, 2, 4},      {70, 200, 8, 32}, {130, 1032, 8, 64},
                                     {200, 96, 4, 100}, {65, 2056, 4, 3},  {64, 1000, 8, 16}, {520, 264, 8, 256},
                                     {600, 96, 4, 200}};
  uint64_t seed = 30;
  for (const auto& shape : shapes) {
    torch::manual_seed(++seed);
    const auto layer = pq_layer(shape.out, shape.in, shape.d, shape.k, torch::randn({shape.k, shape.d}));
    for (int64_t batch : {1, 3}) {
      const auto x = torch::randn({batch, shape.in}) * 2;
      const auto bias = torch::randn({shape.out});
      const auto row_scale = torch::rand({shape.out}) + 0.5;
      const std::string what = std::to_string(shape.out) + "x" + std::to_string(shape.in) + " d " +
                               std::to_string(shape.d) + " K " + std::to_string(shape.k) + " batch " +
                               std::to_string(batch);
      for (int threads : {1, 2}) {  // the thread count sets the order partial outputs are added in
        at::set_num_threads(threads);
        qnoise::set_kernel_path(qnoise::KernelPath::Reference);
        const auto reference = layer.forward(x, bias, row_scale);
        qnoise::set_kernel_path(qnoise::KernelPath::Avx512);
        EXPECT_TRUE(torch::equal(layer.forward(x, bias, row_scale), reference)) << what << " on " << threads << " threads";
      }
    }
  }
}

TEST_F(PqInt8TablesTest, NonFiniteActivationsGiveNaN) {
  torch::manual_seed(23);
  const auto layer = pq_layer(16, 64, 8, 8, torch::randn({8, 8}));
  for (float bad : {NAN, INFINITY}) {
    auto x = torch::randn({64});
    x[37] = bad;
    for (auto path : available_kernel_paths()) {
      if (path == qnoise::KernelPath::Avx2) continue;  // float tables there
      qnoise::set_kernel_path(path);
      EXPECT_TRUE(layer.forward(x).isnan().all().item<bool>()) << qnoise::to_string(path) << " " << bad;
    }
  }
}

TEST_F(PqInt8TablesTest, EveryBatchSizeComputesTheSameFunction) {
  // Large batches too (no float tables shared across columns): each batch row gives what it gives
  // alone. The AVX2 path keeps float tables.
  torch::manual_seed(24);
  const auto layer = pq_layer(40, 128, 8, 16, torch::randn({16, 8}));
  const auto x = torch::randn({70, 128});
  at::set_num_threads(1);
  for (auto path : available_kernel_paths()) {
    qnoise::set_kernel_path(path);
    auto run = [&](const torch::Tensor& input, bool on) {
      qnoise::set_int8_activations(on);
      return layer.forward(input);
    };
    const auto batched = run(x, true);
    EXPECT_EQ(torch::equal(batched, run(x, false)), path == qnoise::KernelPath::Avx2) << qnoise::to_string(path);
    if (path == qnoise::KernelPath::Avx2) continue;
    for (int64_t b : {0, 31, 69}) EXPECT_TRUE(torch::equal(batched[b], run(x[b], true))) << qnoise::to_string(path) << " row " << b;
  }
}

TEST_F(PqInt8TablesTest, LayersOfFewRowsKeepFloatTables) {
  // Fewer than 2K rows: building and rounding the tables would cost more than the lookups save.
  torch::manual_seed(25);
  const auto layer = pq_layer(100, 128, 8, 64, torch::randn({64, 8}));
  const auto x = torch::randn({3, 128});
  for (auto path : available_kernel_paths()) {
    qnoise::set_kernel_path(path);
    qnoise::set_int8_activations(true);
    const auto with = layer.forward(x);
    qnoise::set_int8_activations(false);
    EXPECT_TRUE(torch::equal(with, layer.forward(x))) << qnoise::to_string(path);
  }
}
