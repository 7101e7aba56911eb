// Training throughput with and without Quant-Noise, measured side by side in one run: forward +
// backward + AdamW step at 2 threads, on the shapes `qnoise train` uses by default.
//   * EfficientNet-style CNN, Fashion-MNIST shape (1x28x28), batch 128: images/s.
//   * Transformer LM, 2 layers, d_model 256, FFN 1024, vocabulary 12,873 (the KJV corpus), batch
//     16 x 128 tokens, with adaptive input/softmax (cut-offs 2000, 6000) and with a plain softmax:
//     tokens/s.
// Noise as `qnoise train` applies it: pq p = 0.1 (EfficientNet: blocks of 4 input channels on 1x1
// convolutions and the classifier, stem and depthwise kernels clean; LM: blocks of 8 on every
// Linear and Embedding) and, for the LM, int8 p = 0.5 on every weight. Prints the median time ratios noisy / plain (target <= 1.10: throughput with
// Quant-Noise within 10% of without).
//
//   build/bench/bench_training_throughput
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "qnoise/efficientnet.h"
#include "qnoise/noisy_layers.h"
#include "qnoise/process_tuning.h"
#include "qnoise/transformer_lm.h"
#include "ratio_reporter.h"

namespace {

constexpr int64_t kImageBatch = 128;
constexpr int64_t kLmBatch = 16, kLmLength = 128, kVocabulary = 12873;

// Runs `loss_of()` forward + backward + step under `noisy` for every benchmark iteration.
template <typename LossFn>
void measure_steps(benchmark::State& state, torch::nn::Module& model, const std::vector<qnoise::NoiseTarget>& targets,
                   LossFn loss_of, int64_t units_per_step) {
  qnoise::NoisyLayers noisy(model, targets);
  torch::optim::AdamW optimizer(model.parameters(), torch::optim::AdamWOptions(1e-3));
  model.train();
  for (auto _ : state) {
    optimizer.zero_grad();
    torch::Tensor loss;
    {
      auto scope = noisy.draw();
      loss = loss_of();
    }
    loss.backward();
    optimizer.step();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.SetItemsProcessed(state.iterations() * units_per_step);
}

void efficientnet_step(benchmark::State& state, bool noise) {
  at::set_num_threads(2);
  torch::manual_seed(0);
  qnoise::EfficientNet model;
  const auto pq = qnoise::NoiseFunction::pq();
  std::vector<qnoise::NoiseTarget> targets;
  if (noise) targets = {{"*.depthwise", 0.0, 9, pq}, {"stem.conv", 0.0, 9, pq}, {"*", 0.1, 4, pq}};
  const auto x = torch::randn({kImageBatch, 1, 28, 28});
  const auto y = torch::randint(0, 10, {kImageBatch});
  measure_steps(state, *model, targets,
                [&] { return torch::nn::functional::cross_entropy(model->forward(x), y); }, kImageBatch);
}

void lm_step(benchmark::State& state, bool adaptive, const std::string& noise) {
  at::set_num_threads(2);
  torch::manual_seed(0);
  qnoise::TransformerLm model(qnoise::TransformerLmOptions(kVocabulary, 256, 4, 1024, 2)
                                  .adaptive_input(adaptive)
                                  .adaptive_softmax(adaptive)
                                  .cutoffs({2000, 6000}));
  std::vector<qnoise::NoiseTarget> targets;
  if (noise == "pq") targets = {{"*", 0.1, 8, qnoise::NoiseFunction::pq()}};
  if (noise == "int8") targets = {{"*", 0.5, 1, qnoise::NoiseFunction::parse("int8")}};
  // Zipf-like ids, as in text: adaptive softmax work depends on how many targets leave the head.
  const auto ids = (torch::rand({kLmBatch, kLmLength + 1}).pow(4) * (kVocabulary - 3)).to(torch::kLong) + 3;
  const auto input = ids.slice(1, 0, kLmLength), target = ids.slice(1, 1);
  measure_steps(state, *model, targets, [&] { return model->loss(input, target); }, kLmBatch * kLmLength);
}

void BM_EfficientNetPlain(benchmark::State& state) { efficientnet_step(state, false); }
void BM_EfficientNetPq(benchmark::State& state) { efficientnet_step(state, true); }
void BM_LmAdaptivePlain(benchmark::State& state) { lm_step(state, true, ""); }
void BM_LmAdaptivePq(benchmark::State& state) { lm_step(state, true, "pq"); }
void BM_LmAdaptiveInt8(benchmark::State& state) { lm_step(state, true, "int8"); }
void BM_LmSoftmaxPlain(benchmark::State& state) { lm_step(state, false, ""); }
void BM_LmSoftmaxPq(benchmark::State& state) { lm_step(state, false, "pq"); }

BENCHMARK(BM_EfficientNetPlain)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_EfficientNetPq)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_LmAdaptivePlain)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_LmAdaptivePq)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_LmAdaptiveInt8)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_LmSoftmaxPlain)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_LmSoftmaxPq)->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace

int main(int argc, char** argv) {
  qnoise::tune_process(argv);
  qnoise::bench::RatioReporter reporter;
  qnoise::bench::run_with_repetitions(argc, argv, reporter, 5);
  std::printf("\nTraining step time with Quant-Noise / without (median ratio; throughput = 1 / ratio)\n");
  reporter.print_ratio("EfficientNet, batch 128: pq p=0.1", "BM_EfficientNetPq", "BM_EfficientNetPlain", 1.10);
  reporter.print_ratio("LM adaptive, 16x128: pq p=0.1", "BM_LmAdaptivePq", "BM_LmAdaptivePlain", 1.10);
  reporter.print_ratio("LM adaptive, 16x128: int8 p=0.5", "BM_LmAdaptiveInt8", "BM_LmAdaptivePlain", 1.10);
  reporter.print_ratio("LM softmax, 16x128: pq p=0.1", "BM_LmSoftmaxPq", "BM_LmSoftmaxPlain", 1.10);
  return 0;
}
