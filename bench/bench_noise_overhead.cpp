// Quant-Noise overhead in training: forward + backward of a 1024 -> 4096 -> 1024 MLP on a batch of
// 64, without noise and with pq noise (p = 0.1, blocks of 8) and int8 noise (p = 0.5, per weight)
// on both layers, at 2 threads. Prints the medians and the noisy / plain ratios (target <= 1.10).
//
//   build/bench/bench_noise_overhead   (OpenBLAS uses all cores: 2 here; see qnoise/process_tuning.h
//                                       for the OpenMP and malloc settings it makes)
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "qnoise/noisy_layers.h"
#include "qnoise/process_tuning.h"
#include "ratio_reporter.h"

namespace {

constexpr int64_t kBatch = 64, kInput = 1024, kHidden = 4096;

void train_step(benchmark::State& state, const std::vector<qnoise::NoiseTarget>& targets) {
  at::set_num_threads(2);
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(kInput, kHidden), torch::nn::ReLU(),
                              torch::nn::Linear(kHidden, kInput));
  qnoise::NoisyLayers noisy(*model, targets);
  auto x = torch::randn({kBatch, kInput});
  for (auto _ : state) {
    model->zero_grad();
    torch::Tensor loss;
    {
      auto scope = noisy.draw();
      loss = model->forward(x).square().mean();
    }
    loss.backward();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void BM_MlpStepPlain(benchmark::State& state) { train_step(state, {}); }
void BM_MlpStepPqNoise(benchmark::State& state) {
  train_step(state, {{"*", 0.1, 8, qnoise::NoiseFunction::pq()}});
}
void BM_MlpStepInt8Noise(benchmark::State& state) {
  train_step(state, {{"*", 0.5, 1, qnoise::NoiseFunction::parse("int8")}});
}
void BM_MlpStepInt4Noise(benchmark::State& state) {
  train_step(state, {{"*", 0.5, 1, qnoise::NoiseFunction::parse("int4")}});
}

BENCHMARK(BM_MlpStepPlain)->Unit(benchmark::kMillisecond)->MinTime(0.5);
BENCHMARK(BM_MlpStepPqNoise)->Unit(benchmark::kMillisecond)->MinTime(0.5);
BENCHMARK(BM_MlpStepInt8Noise)->Unit(benchmark::kMillisecond)->MinTime(0.5);
BENCHMARK(BM_MlpStepInt4Noise)->Unit(benchmark::kMillisecond)->MinTime(0.5);

}  // namespace

int main(int argc, char** argv) {
  qnoise::tune_process(argv);
  qnoise::bench::RatioReporter reporter;
  qnoise::bench::run_with_repetitions(argc, argv, reporter, 10);
  std::printf("\nQuant-Noise overhead, MLP 1024-4096-1024, batch 64, forward + backward (median ratios)\n");
  reporter.print_ratio("pq noise (p=0.1, block 8) / plain", "BM_MlpStepPqNoise", "BM_MlpStepPlain", 1.10);
  reporter.print_ratio("int8 noise (p=0.5, per weight) / plain", "BM_MlpStepInt8Noise", "BM_MlpStepPlain", 1.10);
  reporter.print_ratio("int4 noise (p=0.5, per weight) / plain", "BM_MlpStepInt4Noise", "BM_MlpStepPlain", 1.10);
  return 0;
}
