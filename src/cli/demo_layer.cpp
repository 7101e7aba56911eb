// `qnoise demo layer`: compress one layer-sized weight with every scheme and compare size and error.
#include <ATen/ATen.h>
#include <torch/serialize.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/table.h"
#include "qnoise/block_layout.h"
#include "qnoise/error.h"
#include "qnoise/product_quantizer.h"
#include "qnoise/scalar_quantizer.h"

namespace qnoise::cli {

namespace {

struct DemoOptions {
  int64_t rows = 1024;
  int64_t cols = 1024;
  int64_t block_size = 8;
  int64_t n_centroids = 256;
  int iterations = 15;
  uint64_t seed = 0;
  std::string weight_path;
};

// A 2-D float tensor saved from Python with torch.save(tensor, path).
at::Tensor load_weight(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  QNOISE_CHECK(file.good(), "cannot open weight file '", path, "'");
  std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  at::Tensor weight;
  try {
    weight = torch::pickle_load(bytes).toTensor();
  } catch (const std::exception& e) {
    throw Error("'" + path + "' is not a tensor saved with torch.save: " + e.what());
  }
  QNOISE_CHECK(weight.dim() == 2, "'", path, "' holds a tensor of ", weight.dim(),
               " dimensions; the demo takes a 2-D (Linear) weight");
  return weight.to(at::kFloat).contiguous();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Bytes a scalar-quantized weight needs: packed codes plus an fp32 scale and a one-byte zero
// point per channel.
int64_t scalar_bytes(int64_t numel, int bits, int64_t channels) {
  const int64_t code_bytes = bits <= 4 ? (numel + 1) / 2 : numel;
  return code_bytes + channels * (4 + 1);
}

// Bytes a PQ weight needs: one index per block plus the fp16 codebook.
int64_t pq_bytes(int64_t n_blocks, int64_t n_centroids, int64_t block_size) {
  const int64_t index_bytes = n_centroids <= 256 ? 1 : 2;
  return n_blocks * index_bytes + n_centroids * block_size * 2;
}

void run_demo(const DemoOptions& options) {
  at::Tensor weight;
  std::string source;
  if (options.weight_path.empty()) {
    at::manual_seed(options.seed);
    weight = at::randn({options.rows, options.cols}) * (1.0 / std::sqrt(double(options.cols)));
    source = "Gaussian weight (seed " + std::to_string(options.seed) + ")";
  } else {
    weight = load_weight(options.weight_path);
    source = "'" + options.weight_path + "'";
  }
  BlockLayout layout = BlockLayout::linear(weight.sizes().vec(), options.block_size);
  const int64_t numel = weight.numel();
  const double float_bytes = 4.0 * numel;
  std::cout << "Compressing a " << layout.weight_shape()[0] << "x" << layout.weight_shape()[1]
            << " Linear " << source << " with every scheme (" << at::get_num_threads()
            << " threads)\n\n";

  Table table({"scheme", "bits/weight", "size (KB)", "ratio", "rel. error", "time (s)"});
  auto add = [&](const std::string& name, double bytes, double error, double seconds) {
    table.add_row({name, format("%.3f", bytes * 8 / numel), format("%.1f", bytes / 1000),
                   format("%.1fx", float_bytes / bytes), format("%.4f", error),
                   format("%.3f", seconds)});
  };
  add("float32", float_bytes, 0.0, 0.0);
  for (int bits : {8, 4}) {
    for (ScalarObserver observer : {ScalarObserver::MinMax, ScalarObserver::MSE}) {
      auto start = std::chrono::steady_clock::now();
      ScalarQuantizer quantizer(ScalarQuantizerOptions().set_bits(bits).set_observer(observer));
      ScalarQParams qparams = quantizer.observe(weight);
      at::Tensor restored = quantizer.decode(quantizer.compute_codes(weight, qparams), qparams);
      add(quantizer.name(), scalar_bytes(numel, bits, qparams.channels()),
          relative_error(weight, restored), seconds_since(start));
    }
  }
  for (int64_t block_size : {options.block_size, options.block_size / 2}) {
    if (block_size < 1 || layout.row_length() % block_size != 0) continue;
    auto start = std::chrono::steady_clock::now();
    BlockLayout pq_layout = BlockLayout::linear(weight.sizes().vec(), block_size);
    ProductQuantizer quantizer(block_size, ProductQuantizerOptions()
                                               .set_n_centroids(options.n_centroids)
                                               .set_n_iterations(options.iterations)
                                               .set_seed(options.seed));
    at::Tensor blocks = pq_layout.to_blocks(weight);
    quantizer.train(blocks);
    at::Tensor restored = quantizer.decode(quantizer.compute_codes(blocks));
    add(format("PQ K=%lld block %lld", (long long)options.n_centroids, (long long)block_size),
        pq_bytes(pq_layout.n_blocks(), options.n_centroids, block_size),
        relative_error(blocks, restored), seconds_since(start));
  }
  std::cout << table.render()
            << "\nSizes count codes, per-channel fp32 scales and 1-byte zero points (scalar), "
               "and indices plus an fp16 codebook (PQ).\n"
               "rel. error = ||W - Q(W)|| / ||W||. Training with Quant-Noise is what makes a "
               "network survive the PQ rows.\n";
}

}  // namespace

Command add_demo_layer_command(CLI::App& demo) {
  auto options = std::make_shared<DemoOptions>();
  CLI::App* app = demo.add_subcommand(
      "layer", "Compress a layer-sized weight with int8, int4 and PQ; print size and error");
  app->add_option("--rows", options->rows, "Output features of the weight")->check(CLI::PositiveNumber);
  app->add_option("--cols", options->cols, "Input features of the weight")->check(CLI::PositiveNumber);
  app->add_option("--block-size", options->block_size, "PQ block size (must divide --cols)")
      ->check(CLI::PositiveNumber);
  app->add_option("--centroids", options->n_centroids, "PQ centroids K (1..65536)")
      ->check(CLI::Range(int64_t{1}, int64_t{65536}));
  app->add_option("--iterations", options->iterations, "k-means iterations")->check(CLI::PositiveNumber);
  app->add_option("--seed", options->seed, "Seed for the weight and k-means");
  app->add_option("--weight", options->weight_path,
                  "A 2-D tensor saved with torch.save to compress instead of a Gaussian one")
      ->check(CLI::ExistingFile);
  return {app, [options] { run_demo(*options); }};
}

}  // namespace qnoise::cli
