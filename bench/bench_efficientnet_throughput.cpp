// Training throughput of the default EfficientNet (Fashion-MNIST shape, 1x28x28, batch 128):
// forward + backward + Adam step, without noise and with pq Quant-Noise (p = 0.1; blocks of 8 on
// 1x1 convs and the classifier, 9 on 3x3 kernels) on every weight, at 2 threads. Prints the
// medians (images/s as items_per_second) and the noisy / plain ratio (target <= 1.10).
//
//   build/bench/bench_efficientnet_throughput
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "qnoise/efficientnet.h"
#include "qnoise/noisy_layers.h"
#include "qnoise/process_tuning.h"
#include "ratio_reporter.h"

namespace {

constexpr int64_t kBatch = 128;

void train_step(benchmark::State& state, const std::vector<qnoise::NoiseTarget>& targets) {
  at::set_num_threads(2);
  torch::manual_seed(0);
  qnoise::EfficientNet model;
  qnoise::NoisyLayers noisy(*model, targets);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-3));
  const auto x = torch::randn({kBatch, 1, 28, 28});
  const auto y = torch::randint(0, 10, {kBatch});
  for (auto _ : state) {
    optimizer.zero_grad();
    torch::Tensor loss;
    {
      auto scope = noisy.draw();
      loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    }
    loss.backward();
    optimizer.step();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void BM_EfficientNetStepPlain(benchmark::State& state) { train_step(state, {}); }
void BM_EfficientNetStepPqNoise(benchmark::State& state) {
  const auto pq = qnoise::NoiseFunction::pq();
  train_step(state, {{"*.depthwise", 0.1, 9, pq}, {"stem.conv", 0.1, 9, pq}, {"*", 0.1, 8, pq}});
}

BENCHMARK(BM_EfficientNetStepPlain)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_EfficientNetStepPqNoise)->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace

int main(int argc, char** argv) {
  qnoise::tune_process(argv);
  qnoise::bench::RatioReporter reporter;
  qnoise::bench::run_with_repetitions(argc, argv, reporter, 5);
  std::printf("\nEfficientNet training step, batch 128, 1x28x28 (median ratio)\n");
  reporter.print_ratio("pq noise (p=0.1, blocks 8/9) / plain", "BM_EfficientNetStepPqNoise",
                       "BM_EfficientNetStepPlain", 1.10);
  return 0;
}
