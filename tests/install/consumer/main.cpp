// A program of someone else's, built against an installed qnoise (find_package(qnoise)): it
// quantizes a weight to int8 and checks the decoding error against the quantizer's bound, then
// compresses a small model of its own with an int8 plan, writes and reads the .qnz file, loads it
// into a fresh instance running the packed kernels, and compares its outputs with the decoded
// weights' product. Prints one line per check; exits non-zero when one fails.
//   qnoise_consumer <directory for the .qnz file>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "qnoise/compressed_weight.h"
#include "qnoise/layer_kernel.h"
#include "qnoise/module_compression.h"
#include "qnoise/qnz_file.h"
#include "qnoise/runtime_model.h"
#include "qnoise/version.h"

namespace {

struct MlpImpl : torch::nn::Module {
  MlpImpl() {
    fc1 = register_module("fc1", torch::nn::Linear(64, 128));
    fc2 = register_module("fc2", torch::nn::Linear(128, 16));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return qnoise::run_layer(fc2, torch::relu(qnoise::run_layer(fc1, x)));
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what.c_str());
  if (!ok) ++failures;
}

// Per-channel int8: every weight decodes within half a step of its channel's scale.
void check_scalar_quantization() {
  torch::manual_seed(1);
  const torch::Tensor weight = torch::randn({32, 96});
  const qnoise::CompressedWeight q = qnoise::compress_scalar(weight, 8);
  const torch::Tensor error = (q.decode() - weight).abs().amax(1);  // per output channel
  const double worst = (error / q.scale).max().item<double>();
  check(q.scheme == qnoise::WeightScheme::Int8 && q.codes.numel() == weight.numel(),
        "compress_scalar gives int8 codes, " + std::to_string(q.bits_per_weight()) + " bits per weight");
  check(worst <= 0.5 + 1e-4, "int8 decoding error " + std::to_string(worst) + " steps (bound 0.5)");
}

void check_module_roundtrip(const std::filesystem::path& dir) {
  torch::manual_seed(2);
  Mlp model;
  qnoise::ModuleCompressionOptions options;
  options.plan = qnoise::parse_quantization_plan(
      {{"stages", {{{"name", "all"}, {"layers", {"fc*"}}, {"scheme", "int8"}}}}});
  const qnoise::CompressedModel compressed = qnoise::compress_module(*model, options).model;
  const std::string path = (dir / "consumer.qnz").string();
  qnoise::write_qnz(path, compressed);
  const qnoise::CompressedModel file = qnoise::read_qnz(path);
  const auto file_bytes = std::filesystem::file_size(path);
  check(file.find("fc1.weight") != nullptr && file.find("fc1.weight")->scheme == qnoise::WeightScheme::Int8,
        "consumer.qnz written and read: " + std::to_string(file_bytes) + " bytes, " +
            std::to_string(file.float_bytes()) + " in float32");

  torch::manual_seed(3);  // a fresh instance: other initial weights
  Mlp fresh;
  const qnoise::RuntimeLayers layers = qnoise::load_packed_module(*fresh, file);
  check(layers.layers().size() == 2 && qnoise::layer_kernel(*fresh->fc1) != nullptr,
        "load_packed_module put kernels on " + std::to_string(layers.layers().size()) + " layers");

  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({4, 64});
  const auto layer = [&](const char* name, const torch::Tensor& input) {
    return torch::addmm(file.find(std::string(name) + ".bias")->decode(), input,
                        file.find(std::string(name) + ".weight")->decode().t());
  };
  const torch::Tensor expected = layer("fc2", torch::relu(layer("fc1", x)));
  const torch::Tensor got = fresh->forward(x);
  const double difference = (got - expected).abs().max().item<double>();
  const double scale = expected.abs().max().item<double>();
  check(difference <= 1e-4 * scale, "packed forward against decoded weights: max difference " +
                                        std::to_string(difference) + " of " + std::to_string(scale));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <directory for the .qnz file>\n", argv[0]);
    return 2;
  }
  std::printf("qnoise %s\n", qnoise::version().c_str());
  try {
    check_scalar_quantization();
    check_module_roundtrip(argv[1]);
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 1;
  }
  std::printf("%s\n", failures == 0 ? "consumer: all checks passed" : "consumer: checks failed");
  return failures == 0 ? 0 : 1;
}
