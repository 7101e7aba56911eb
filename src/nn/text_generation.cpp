#include "qnoise/text_generation.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "qnoise/error.h"

namespace qnoise {

namespace {

// Uniform in [0, 1) from the top 53 bits: the same on every standard library, unlike
// std::uniform_real_distribution.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace

at::Tensor next_token_log_probs(TransformerLmImpl& lm, const std::vector<int64_t>& context, int64_t max_context) {
  QNOISE_CHECK(!context.empty(), "text generation needs at least one token of context");
  QNOISE_CHECK(max_context > 0, "text generation: max_context must be positive, got ", max_context);
  const auto length = std::min<int64_t>(max_context, static_cast<int64_t>(context.size()));
  const std::vector<int64_t> window(context.end() - length, context.end());
  torch::NoGradGuard no_grad;
  lm.eval();
  const at::Tensor tokens = at::tensor(window, at::kLong).unsqueeze(0);
  return lm.log_probs(tokens).squeeze(0).to(at::kCPU, at::kFloat);
}

int64_t sample_token(const at::Tensor& log_probs, const SamplingOptions& options, std::mt19937_64& rng) {
  QNOISE_CHECK(options.temperature >= 0, "temperature must be >= 0, got ", options.temperature);
  QNOISE_CHECK(options.top_k >= 0, "top-k must be >= 0, got ", options.top_k);
  QNOISE_CHECK(log_probs.dim() == 1 && log_probs.numel() > 0, "sample_token needs log-probabilities [vocab]");
  const at::Tensor values = log_probs.to(at::kCPU, at::kDouble).contiguous();
  const double* lp = values.data_ptr<double>();
  const auto vocab = values.numel();
  // Candidates: the k most probable by decreasing probability, ties by id (deterministic greedy
  // and top-k); all tokens in id order when there is no cut.
  int64_t k = vocab;
  if (options.temperature == 0) k = 1;
  else if (options.top_k > 0) k = std::min(options.top_k, vocab);
  std::vector<int64_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (k < vocab)
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) { return lp[a] != lp[b] ? lp[a] > lp[b] : a < b; });
  if (options.temperature == 0) return order[0];
  // Weights relative to the most probable candidate: no overflow at small temperatures.
  double best = lp[order[0]];
  for (int64_t i = 1; i < k; ++i) best = std::max(best, lp[order[i]]);
  std::vector<double> weights(static_cast<size_t>(k));
  double total = 0;
  for (int64_t i = 0; i < k; ++i) total += weights[i] = std::exp((lp[order[i]] - best) / options.temperature);
  const double target = uniform01(rng) * total;
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) {
    sum += weights[i];
    if (target < sum) return order[i];
  }
  return order[k - 1];  // rounding left target at the very top
}

std::vector<int64_t> generate_tokens(TransformerLmImpl& lm, std::vector<int64_t> context, int64_t count,
                                     int64_t max_context, const SamplingOptions& options, uint64_t seed,
                                     const std::function<void(int64_t)>& on_token) {
  QNOISE_CHECK(count >= 0, "the number of tokens to generate must be >= 0, got ", count);
  QNOISE_CHECK(!context.empty(), "generation needs at least one context token");
  QNOISE_CHECK(max_context >= 2, "the context window must hold at least 2 tokens, got ", max_context);
  std::mt19937_64 rng(seed);
  std::vector<int64_t> generated;
  if (count == 0) return generated;
  lm.eval();
  at::NoGradGuard no_grad;
  // Keys and values of the context are cached, so each new token runs the layers on one position.
  // When the window is full, the cache restarts from the last half of it (positions are absolute).
  DecoderCache cache;
  auto prime = [&](int64_t length) {
    cache = DecoderCache();
    const std::vector<int64_t> window(context.end() - std::min<int64_t>(length, context.size()), context.end());
    return lm.log_probs_cached(at::tensor(window, at::kLong).unsqueeze(0), cache);
  };
  at::Tensor log_probs = prime(max_context);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t token = sample_token(log_probs.squeeze(0).to(at::kFloat), options, rng);
    context.push_back(token);
    generated.push_back(token);
    if (on_token) on_token(token);
    if (i + 1 == count) break;
    log_probs = cache.length < max_context ? lm.log_probs_cached(at::tensor({token}, at::kLong).view({1, 1}), cache)
                                           : prime(max_context / 2);
  }
  return generated;
}

}  // namespace qnoise
