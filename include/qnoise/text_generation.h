#pragma once
// Sampling text from a Transformer language model, one token at a time, batch 1.
//
// Each step runs the model on the whole context (at most `max_context` tokens, the window it was
// trained on): O(n^2) attention per step for n tokens of context. A key/value cache would make a
// step O(n); contexts here are at most the training seq_len, so it is left out.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "qnoise/transformer_lm.h"

namespace qnoise {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (the most probable token, the lowest id on ties)
  int64_t top_k = 0;         // draw among the k most probable tokens only; 0: all
};

// Log-probabilities [vocab] (float) of the token after `context` (its last `max_context` tokens;
// at least one token), in eval mode without gradients.
at::Tensor next_token_log_probs(TransformerLmImpl& lm, const std::vector<int64_t>& context, int64_t max_context);

// One token drawn from log-probabilities [vocab]. The draw is a function of `rng`'s state only
// (a plain inverse-CDF draw on doubles), so a seed gives the same tokens on every platform that
// computes the same log-probabilities. Throws qnoise::Error for a negative temperature or top_k.
int64_t sample_token(const at::Tensor& log_probs, const SamplingOptions& options, std::mt19937_64& rng);

// `count` tokens continuing `context`, each drawn from the model's distribution after the
// context so far: its last `max_context` tokens to begin with, then every token since, with a
// key/value cache (TransformerLm::log_probs_cached) so a token costs one position's work; when the
// window is full the cache restarts from its last max_context / 2 tokens. `on_token`, when given, sees each token as it
// is drawn (to print as it goes).
std::vector<int64_t> generate_tokens(TransformerLmImpl& lm, std::vector<int64_t> context, int64_t count,
                                     int64_t max_context, const SamplingOptions& options, uint64_t seed,
                                     const std::function<void(int64_t)>& on_token = {});

}  // namespace qnoise
