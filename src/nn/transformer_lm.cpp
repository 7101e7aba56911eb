#include "qnoise/transformer_lm.h"

#include <torch/torch.h>

#include <cmath>
#include <unordered_set>

#include "qnoise/layer_kernel.h"
#include "qnoise/error.h"
#include "qnoise/layer_factory.h"

namespace qnoise {

at::Tensor sinusoidal_positions(int64_t length, int64_t dim, int64_t offset) {
  const int64_t half = dim / 2;
  const double step = std::log(10000.0) / std::max<int64_t>(half - 1, 1);
  auto freqs = torch::exp(torch::arange(half, torch::kFloat) * -step);
  auto angles = torch::arange(offset, offset + length, torch::kFloat).unsqueeze(1) * freqs.unsqueeze(0);
  auto table = torch::cat({torch::sin(angles), torch::cos(angles)}, 1);
  if (dim % 2 == 1) table = torch::cat({table, torch::zeros({length, 1})}, 1);
  return table;
}

int64_t count_parameters(const torch::nn::Module& module) {
  std::unordered_set<const void*> seen;
  int64_t total = 0;
  for (const auto& p : module.parameters())
    if (seen.insert(p.unsafeGetTensorImpl()).second) total += p.numel();
  return total;
}

TransformerLmImpl::TransformerLmImpl(const TransformerLmOptions& options_) : options(options_) {
  const int64_t d = options.d_model(), vocab = options.vocab_size();
  QNOISE_CHECK(vocab > 0, "transformer LM: vocab_size must be positive");
  QNOISE_CHECK(d > 0 && options.heads() > 0 && d % options.heads() == 0, "transformer LM: d_model ", d,
               " is not divisible by heads ", options.heads());
  QNOISE_CHECK(options.layers() > 0, "transformer LM: layers must be positive");
  QNOISE_CHECK(options.max_positions() > 0, "transformer LM: max_positions must be positive");
  QNOISE_CHECK(options.padding_idx() >= -1 && options.padding_idx() < vocab, "transformer LM: bad padding_idx");
  QNOISE_CHECK(options.dropout() >= 0 && options.dropout() < 1, "transformer LM: dropout must be in [0, 1)");
  const bool adaptive = options.adaptive_input() || options.adaptive_softmax();
  AdaptiveOptions adaptive_options(vocab, d, options.cutoffs());
  adaptive_options.factor(options.adaptive_factor()).padding_idx(options.padding_idx());
  if (adaptive) check_adaptive_options(adaptive_options);

  if (options.adaptive_input()) {
    adaptive_input = register_module("adaptive_input", AdaptiveInput(adaptive_options));
  } else {
    auto embedding_options = torch::nn::EmbeddingOptions(vocab, d);
    if (options.padding_idx() >= 0) embedding_options.padding_idx(options.padding_idx());
    embed = register_module("embed", make_embedding(embedding_options));
    if (!constructing_weightless()) {
      torch::NoGradGuard no_grad;
      embed->weight.normal_(0, std::pow(static_cast<double>(d), -0.5));
      if (options.padding_idx() >= 0) embed->weight[options.padding_idx()].zero_();
    }
  }
  if (options.learned_positions()) {
    positions = register_module("positions", make_embedding(torch::nn::EmbeddingOptions(options.max_positions(), d)));
  } else {
    // Without weights (the runtime), the table is not kept either: positions are computed per call.
    sinusoids_ = register_buffer("sinusoids", constructing_weightless()
                                                  ? weight_placeholder({options.max_positions(), d}, torch::kFloat)
                                                  : sinusoidal_positions(options.max_positions(), d));
  }
  auto layer = TransformerLayerOptions(d, options.heads(), options.ffn_dim())
                   .dropout(options.dropout())
                   .attention_dropout(options.attention_dropout())
                   .activation_dropout(options.activation_dropout())
                   .activation(options.activation());
  decoder = register_module("decoder", TransformerStack(TransformerStackOptions(layer, options.layers())
                                                            .layer_drop(options.layer_drop())
                                                            .share_every(options.share_every())
                                                            .share_cycle(options.share_cycle())));
  if (options.adaptive_softmax()) {
    adaptive_softmax = options.adaptive_input() && options.tie_weights()
                           ? register_module("adaptive_softmax", AdaptiveSoftmax(adaptive_options, adaptive_input))
                           : register_module("adaptive_softmax", AdaptiveSoftmax(adaptive_options));
  } else if (!options.tie_weights() || options.adaptive_input()) {
    output = register_module("output", make_linear(torch::nn::LinearOptions(d, vocab).bias(false)));
  }
}

at::Tensor TransformerLmImpl::embed_positions(const at::Tensor& tokens, int64_t offset) {
  QNOISE_CHECK(tokens.dim() == 2, "transformer LM: tokens must be [batch, length], got ", tokens.sizes());
  const int64_t length = tokens.size(1);
  QNOISE_CHECK(length > 0 && offset + length <= options.max_positions(), "transformer LM: positions ", offset, "..",
               offset + length, " outside [1, max_positions=", options.max_positions(), "]");
  auto x = adaptive_input ? adaptive_input->forward(tokens) : run_layer(embed, tokens);
  if (options.scale_embedding()) x = x * std::sqrt(static_cast<double>(options.d_model()));
  // Learned positions through the layer (only the rows asked for, when it runs compressed).
  auto pos = positions ? run_layer(positions, at::arange(offset, offset + length, tokens.options().dtype(at::kLong)))
         : is_weight_placeholder(sinusoids_) ? sinusoidal_positions(length, options.d_model(), offset)
                                             : sinusoids_.narrow(0, offset, length);
  return torch::dropout(x + pos.unsqueeze(0), options.dropout(), is_training());
}

at::Tensor TransformerLmImpl::forward(const at::Tensor& tokens) {
  return decoder->forward(embed_positions(tokens, 0), /*causal=*/true);
}

at::Tensor TransformerLmImpl::log_probs_cached(const at::Tensor& tokens, DecoderCache& cache) {
  auto hidden = decoder->forward_cached(embed_positions(tokens, cache.length), cache);
  cache.length += tokens.size(1);
  return output_log_probs(hidden.select(1, hidden.size(1) - 1));
}

at::Tensor TransformerLmImpl::output_log_probs(const at::Tensor& hidden) {
  auto flat = hidden.reshape({-1, options.d_model()});
  at::Tensor lp;
  if (adaptive_softmax) {
    lp = adaptive_softmax->log_probs(flat);
  } else {
    // Tied: read the embedding's `weight` member now, so Quant-Noise on it reaches both uses.
    lp = torch::log_softmax(output ? run_layer(output, flat) : tied_linear(*embed, embed->weight, flat), -1);
  }
  auto shape = hidden.sizes().vec();
  shape.back() = options.vocab_size();
  return lp.view(shape);
}

at::Tensor TransformerLmImpl::loss(const at::Tensor& tokens, const at::Tensor& targets) {
  QNOISE_CHECK(targets.sizes() == tokens.sizes(), "transformer LM: targets ", targets.sizes(),
               " must match tokens ", tokens.sizes());
  auto hidden = forward(tokens).reshape({-1, options.d_model()});
  auto flat_targets = targets.reshape({-1});
  if (adaptive_softmax) return adaptive_softmax->nll(hidden, flat_targets).mean();
  auto logits = output ? run_layer(output, hidden) : tied_linear(*embed, embed->weight, hidden);
  return torch::nn::functional::cross_entropy(logits, flat_targets);
}

at::Tensor TransformerLmImpl::log_probs(const at::Tensor& tokens) {
  auto hidden = forward(tokens);
  return output_log_probs(hidden.select(1, hidden.size(1) - 1));
}

}  // namespace qnoise
