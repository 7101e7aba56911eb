#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "qnoise/compressed_weight.h"
#include "qnoise/error.h"
#include "qnoise/packed_linear.h"
#include "qnoise/runtime_options.h"
#include "runtime/packed_linear_fixture.h"

namespace {

qnoise::CompressedWeight random_pq(int64_t out, int64_t in, int64_t d, int64_t k, uint64_t seed) {
  torch::manual_seed(seed);
  const auto codebook = torch::randn({k, d});
  const auto codes = torch::randint(0, k, {out * in / d}, torch::kLong).to(torch::kByte);
  return qnoise::compress_pq(qnoise::BlockLayout::linear({out, in}, d), codebook, codes);
}

// One layer of the same weight for each kernel path this CPU runs, in the order of
// available_kernel_paths() (reference first).
using LayerPerPath = std::vector<std::unique_ptr<qnoise::PackedLinearBase>>;

// `Layer` of `weight` built with `options` on every path.
template <typename Layer>
LayerPerPath on_every_path(const qnoise::CompressedWeight& weight,
                           qnoise::RuntimeOptions options = options_for(qnoise::KernelPath::Auto)) {
  LayerPerPath layers;
  for (auto path : available_kernel_paths()) {
    options.kernel_path = path;
    layers.push_back(std::make_unique<Layer>(weight, options));
  }
  return layers;
}

// The int8 (bits 8) or int4 layers of `weight` on every path.
LayerPerPath scalar_on_every_path(const qnoise::CompressedWeight& weight, int bits,
                                  const qnoise::RuntimeOptions& options = options_for(qnoise::KernelPath::Auto)) {
  return bits == 8 ? on_every_path<qnoise::PackedInt8Linear>(weight, options)
                   : on_every_path<qnoise::PackedInt4Linear>(weight, options);
}

// || a - b || <= tolerance * || b ||: fp32 summation order is all that may differ.
void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tolerance, const std::string& what) {
  const double error = (a.to(torch::kDouble) - b.to(torch::kDouble)).norm().item<double>();
  const double scale = b.to(torch::kDouble).norm().item<double>();
  EXPECT_LE(error, tolerance * scale + 1e-30) << what << ": error " << error << " vs norm " << scale;
}

torch::Tensor exact_output(const qnoise::PackedLinearBase& layer, const torch::Tensor& x, const torch::Tensor& bias,
                           const torch::Tensor& row_scale) {
  auto y = torch::mm(x.to(torch::kDouble), layer.decode().to(torch::kDouble).t());
  if (row_scale.defined()) y = y * row_scale.to(torch::kDouble);
  if (bias.defined()) y = y + bias.to(torch::kDouble);
  return y;
}

// Reference and SIMD paths (one layer each, `layers`) on 1 and 2 threads against each other and
// against decode() @ x.
void check_layer(const LayerPerPath& layers, int64_t batch, bool with_bias, bool with_row_scale,
                 const std::string& what) {
  const qnoise::PackedLinearBase& reference_layer = *layers.front();
  const int64_t out = reference_layer.out_features(), in = reference_layer.in_features();
  const auto x = torch::randn({batch, in});
  const auto bias = with_bias ? torch::randn({out}) : torch::Tensor();
  const auto row_scale = with_row_scale ? torch::rand({out}) + 0.5 : torch::Tensor();
  auto run = [&](const qnoise::PackedLinearBase& layer) {
    const auto* pq = dynamic_cast<const qnoise::PackedPqLinear*>(&layer);
    return pq ? pq->forward(x, bias, row_scale) : layer.forward(x, bias);
  };
  const auto exact = exact_output(reference_layer, x, bias, row_scale);
  at::set_num_threads(1);
  const auto reference = run(reference_layer);
  ASSERT_EQ(reference.sizes(), (std::vector<int64_t>{batch, out}));
  expect_close(reference, exact, 1e-5, what + " reference vs decode() @ x");
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (const auto& layer : layers) {
      expect_close(run(*layer), reference, 1e-5,
                   what + " " + qnoise::to_string(layer->options().kernel_path) + " on " + std::to_string(threads) +
                       " threads");
    }
  }
}

std::string describe(int64_t out, int64_t in, int64_t batch, const char* extra = "") {
  return std::to_string(out) + "x" + std::to_string(in) + " batch " + std::to_string(batch) + extra;
}

}  // namespace

TEST_F(PackedLinearTest, PqHandWorkedExample) {
  // 2x8 weight, d = 4, K = 3; row 0 = [c0 | c2], row 1 = [c1 | c1].
  const auto codebook = torch::tensor({1, 0, 0, 0, 0, 1, 2, 0, 1, 1, 1, 1}, torch::kFloat).view({3, 4});
  const auto codes = torch::tensor({0, 2, 1, 1}, torch::kByte);
  const auto weight = qnoise::compress_pq(qnoise::BlockLayout::linear({2, 8}, 4), codebook, codes);
  const auto x = torch::arange(1, 9, torch::kFloat);  // 1..8
  // row 0: x0 + (x4 + x5 + x6 + x7) = 1 + 26 = 27; row 1: (x1 + 2 x2) + (x5 + 2 x6) = 8 + 20 = 28.
  for (auto path : {qnoise::KernelPath::Reference, qnoise::KernelPath::Auto}) {
    const qnoise::PackedPqLinear layer(weight, options_for(path));
    EXPECT_TRUE(torch::equal(layer.forward(x), torch::tensor({27.0f, 28.0f})));
    const auto scaled = layer.forward(x.unsqueeze(0), torch::tensor({1.0f, -1.0f}), torch::tensor({2.0f, 0.5f}));
    EXPECT_TRUE(torch::equal(scaled, torch::tensor({{55.0f, 13.0f}})));
    EXPECT_TRUE(torch::equal(layer.decode(), weight.decode()));
  }
}

TEST_F(PackedLinearTest, PqMatchesReferenceOnRaggedShapes) {
  // (out, in, d, K): d = 4/8/16 fast paths and 5/9 generic; out not a multiple of 8; several and
  // ragged block groups (16 blocks per group at K = 256); K < 256; out a multiple of 8 with several
  // groups (at batch 1 the first thread's part sums into y and the others are added to it).
  const std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>> shapes = {
      {1, 8, 4, 3}, {13, 36, 9, 17}, {8, 64, 8, 256}, {17, 48, 16, 200}, {100, 96, 4, 256},
      {37, 296, 8, 256}, {9, 40, 5, 7}, {70, 512, 4, 64}, {3, 144, 16, 256}, {72, 520, 8, 256}};
  uint64_t seed = 0;
  for (const auto& [out, in, d, k] : shapes) {
    const auto layers = on_every_path<qnoise::PackedPqLinear>(random_pq(out, in, d, k, ++seed));
    for (int64_t batch : {1, 3, 17, 64, 65}) {
      const bool bias = batch % 2 == 1, row_scale = batch != 17;
      check_layer(layers, batch, bias, row_scale,
                  "pq d " + std::to_string(d) + " K " + std::to_string(k) + " " + describe(out, in, batch));
    }
  }
}

TEST_F(PackedLinearTest, PqTiledGemmPathMatches) {
  auto options = options_for(qnoise::KernelPath::Auto);
  options.tuning.pq_gemm_min_batch = 2;
  options.tuning.gemm_tile_floats = 3000;  // several tiles, the last one ragged
  const auto layers = on_every_path<qnoise::PackedPqLinear>(random_pq(45, 128, 8, 256, 7), options);
  for (int64_t batch : {1, 3, 17}) check_layer(layers, batch, true, true, "pq via GEMM " + describe(45, 128, batch));
}

TEST_F(PackedLinearTest, ScalarMatchesReferenceOnRaggedShapes) {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {5, 7}, {13, 33}, {8, 64}, {31, 100}, {66, 257}, {4, 1024}};
  uint64_t seed = 100;
  for (int bits : {8, 4}) {
    for (const auto& [out, in] : shapes) {
      torch::manual_seed(++seed);
      const auto weight = qnoise::compress_scalar(torch::randn({out, in}), bits);
      const auto layers = scalar_on_every_path(weight, bits);
      for (const auto& layer : layers)
        EXPECT_TRUE(torch::allclose(layer->decode(), weight.decode(), 0, 0))
            << bits << " bits " << out << "x" << in << " " << qnoise::to_string(layer->options().kernel_path);
      for (int64_t batch : {1, 3, 17, 64})
        check_layer(layers, batch, batch != 3, false, "int" + std::to_string(bits) + " " + describe(out, in, batch));
    }
  }
}

TEST_F(PackedLinearTest, ScalarSmallBatchAndGemmPathsAgree) {
  auto options = options_for(qnoise::KernelPath::Auto);
  options.tuning.gemm_tile_floats = 2000;
  torch::manual_seed(3);
  const auto weight = qnoise::compress_scalar(torch::randn({50, 96}), 4);
  for (int64_t threshold : {1, 1000}) {
    options.tuning.scalar_gemm_min_batch = threshold;
    const auto layers = on_every_path<qnoise::PackedInt4Linear>(weight, options);
    for (int64_t batch : {1, 9}) check_layer(layers, batch, true, false, "int4 threshold " + std::to_string(threshold));
  }
}

TEST_F(PackedLinearTest, PanelGemmSplitsPanelsOrBatchRowsOverThreads) {
  // The large-batch product for every batch size: 200 outputs are 13 panels of 16 rows, the last
  // one of 8 (enough panels to split them over 2 threads); 300 inputs are a 256-input run and a
  // ragged one of 44 (PQ blocks of 12 straddle the two); batches of 1, 7 and 40 leave partial
  // tiles of 6 rows. 20 outputs (2 panels) split the batch rows instead. Also the decoded tiles
  // for the BLAS GEMM that the SIMD paths can still be switched to.
  auto options = options_for(qnoise::KernelPath::Auto);
  options.tuning.scalar_gemm_min_batch = 1;
  options.tuning.pq_gemm_min_batch = 1;
  for (const auto& [out, panels] : std::vector<std::pair<int64_t, bool>>{{200, true}, {20, true}, {200, false}}) {
    options.tuning.panel_gemm = panels;
    torch::manual_seed(out);
    const auto weight = torch::randn({out, 300});
    const auto int8 = on_every_path<qnoise::PackedInt8Linear>(qnoise::compress_scalar(weight, 8), options);
    const auto int4 = on_every_path<qnoise::PackedInt4Linear>(qnoise::compress_scalar(weight, 4), options);
    const auto pq =
        on_every_path<qnoise::PackedPqLinear>(random_pq(out, 300, 12, 64, static_cast<uint64_t>(out)), options);
    for (int64_t batch : {1, 7, 40}) {
      const char* path = panels ? "" : " (tiles)";
      check_layer(int8, batch, true, false, "int8 " + describe(out, 300, batch, path));
      check_layer(int4, batch, false, false, "int4 " + describe(out, 300, batch, path));
      check_layer(pq, batch, batch != 7, batch != 1, "pq " + describe(out, 300, batch, path));
    }
  }
}

TEST_F(PackedLinearTest, OneByOneConvWeightsAreLinear) {
  torch::manual_seed(4);
  const auto conv = torch::randn({12, 16, 1, 1});
  const qnoise::PackedInt8Linear int8(qnoise::compress_scalar(conv, 8));
  EXPECT_EQ(int8.out_features(), 12);
  EXPECT_EQ(int8.in_features(), 16);
  const auto pq = qnoise::compress_pq(qnoise::BlockLayout::conv2d({12, 16, 1, 1}, 4), torch::randn({5, 4}),
                                      torch::randint(0, 5, {48}, torch::kLong).to(torch::kByte));
  const auto layers = on_every_path<qnoise::PackedPqLinear>(pq);
  EXPECT_TRUE(torch::equal(layers.front()->decode(), pq.decode().view({12, 16})));
  check_layer(layers, 2, false, false, "pq 1x1 conv");
}

TEST_F(PackedLinearTest, BytesCountTheResidentWeight) {
  const qnoise::PackedPqLinear pq(random_pq(16, 64, 8, 256, 1));
  // codes, the centroids (transposed) and their int8-table form
  EXPECT_EQ(pq.bytes(), 16 * 8 + 256 * 8 * 4 + 256 * 8);
  const qnoise::PackedInt4Linear int4(qnoise::compress_scalar(torch::randn({16, 64}), 4));
  EXPECT_EQ(int4.bytes(), 16 * 32 + 16 * 8);
}

TEST_F(PackedLinearTest, InvalidInputThrowsWithAClearMessage) {
  auto pq = random_pq(4, 16, 4, 8, 2);
  auto expect_error = [](auto make, const std::string& part) {
    try {
      make();
      ADD_FAILURE() << "no qnoise::Error, expected one mentioning '" << part << "'";
    } catch (const qnoise::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  auto too_large = pq;
  too_large.codes = pq.codes.clone();
  too_large.codes[5] = 8;
  expect_error([&] { qnoise::PackedPqLinear{too_large}; }, "not below K = 8");
  auto ragged = pq;
  ragged.block_size = 3;
  expect_error([&] { qnoise::PackedPqLinear{ragged}; }, "block size 3 does not divide");
  auto many = pq;
  many.centroids = torch::randn({300, 4}).to(torch::kHalf);
  expect_error([&] { qnoise::PackedPqLinear{many}; }, "at most 256 centroids");
  auto three_d = qnoise::compress_scalar(torch::randn({4, 4, 3}), 8);
  expect_error([&] { qnoise::PackedInt8Linear{three_d}; }, "Linear weight [out, in]");
  const auto int4 = qnoise::compress_scalar(torch::randn({4, 16}), 4);
  expect_error([&] { qnoise::PackedInt8Linear{int4}; }, "takes an int8 weight, got int4");
  expect_error([&] { qnoise::PackedPqLinear{int4}; }, "takes a pq weight");
  const qnoise::PackedPqLinear layer(pq);
  expect_error([&] { layer.forward(torch::randn({2, 15})); }, "input must be [batch, 16]");
  expect_error([&] { layer.forward(torch::randn({2, 16}), torch::randn({3})); }, "bias must be float32 [4]");
  expect_error([&] { layer.forward(torch::randn({2, 16}), {}, torch::randn({5})); }, "row scale must be float32 [4]");
  expect_error([&] { layer.forward(torch::randn({2, 16}).to(torch::kDouble)); }, "float32");
}

TEST_F(PackedLinearTest, DecodeRowsGivesTheStoredTablesRows) {
  // An embedding table kept only in packed form (runtime EmbeddingKernel) must look up exactly what
  // the stored form decodes, for every scheme with a packed form, int4's odd row width included.
  torch::manual_seed(41);
  const auto values = torch::randn({37, 24});
  const std::vector<qnoise::CompressedWeight> tables = {
      qnoise::compress_pq(qnoise::BlockLayout::linear({37, 24}, 4), torch::randn({200, 4}),
                          torch::randint(0, 200, {37 * 6}, torch::kLong).to(torch::kByte)),
      qnoise::compress_scalar(values, 8), qnoise::compress_scalar(values, 4)};
  const auto ids = torch::tensor({{36, 0, 5}, {5, 17, 1}});
  for (const auto& table : tables) {
    std::unique_ptr<qnoise::PackedLinearBase> packed;
    if (table.scheme == qnoise::WeightScheme::PQ) packed = std::make_unique<qnoise::PackedPqLinear>(table);
    if (table.scheme == qnoise::WeightScheme::Int8) packed = std::make_unique<qnoise::PackedInt8Linear>(table);
    if (table.scheme == qnoise::WeightScheme::Int4) packed = std::make_unique<qnoise::PackedInt4Linear>(table);
    const auto rows = packed->decode_rows(ids);
    const std::string what = qnoise::to_string(table.scheme);
    EXPECT_TRUE(torch::equal(rows, table.decode().index_select(0, ids.reshape({-1})))) << what;
    EXPECT_TRUE(torch::equal(rows, packed->decode().index_select(0, ids.reshape({-1})))) << what;
    EXPECT_EQ(packed->decode_rows(torch::zeros({0}, torch::kLong)).sizes(), (std::vector<int64_t>{0, 24})) << what;
    for (const auto& bad : {torch::tensor({0, 37}), torch::tensor({-1})})
      EXPECT_THROW(
          {
            try {
              packed->decode_rows(bad);
            } catch (const qnoise::Error& e) {
              EXPECT_NE(std::string(e.what()).find("outside the table's 37 rows"), std::string::npos) << e.what();
              throw;
            }
          },
          qnoise::Error)
          << what;
    EXPECT_THROW(packed->decode_rows(torch::tensor({1.0f})), qnoise::Error) << what;
  }
}

TEST_F(PackedLinearTest, TransposedForwardIsXTimesTheDecodedWeight) {
  // Tied output projections multiply by W (not W^T). PQ sums the inputs by code per block; its
  // rows cross chunks of 64 and groups of blocks here (out 130, in 96 at d 3: 32 blocks), K < 256
  // and not a multiple of 8 (the eight partial sums over the centroids and their tail).
  torch::manual_seed(43);
  const auto values = torch::randn({130, 96});
  const auto options = options_for(qnoise::KernelPath::Auto);
  const std::vector<std::pair<std::string, std::shared_ptr<qnoise::PackedLinearBase>>> layers = {
      {"pq d3 K203", std::make_shared<qnoise::PackedPqLinear>(random_pq(130, 96, 3, 203, 44), options)},
      {"pq d8 K256", std::make_shared<qnoise::PackedPqLinear>(random_pq(72, 520, 8, 256, 45), options)},
      {"int8", std::make_shared<qnoise::PackedInt8Linear>(qnoise::compress_scalar(values, 8), options)},
      {"int4", std::make_shared<qnoise::PackedInt4Linear>(qnoise::compress_scalar(values, 4), options)}};
  for (const auto& [what, layer] : layers) {
    const int64_t out = layer->out_features(), in = layer->in_features();
    const auto weight = layer->decode().to(torch::kDouble);
    for (int64_t batch : {1, 3}) {
      const auto x = torch::randn({batch, out});
      const auto y = layer->transposed_forward(x);
      ASSERT_EQ(y.sizes(), (std::vector<int64_t>{batch, in})) << what;
      expect_close(y, torch::mm(x.to(torch::kDouble), weight), 1e-5, what + " batch " + std::to_string(batch));
    }
    const auto x1 = torch::randn({out});
    expect_close(layer->transposed_forward(x1), torch::mv(weight.t(), x1.to(torch::kDouble)), 1e-5, what + " 1-D");
    try {
      layer->transposed_forward(torch::randn({2, in + 1}));
      ADD_FAILURE() << what << ": a wrong width was accepted";
    } catch (const qnoise::Error& e) {
      EXPECT_NE(std::string(e.what()).find("transposed input must be [batch, " + std::to_string(out) + "]"),
                std::string::npos)
          << e.what();
    }
  }
}
