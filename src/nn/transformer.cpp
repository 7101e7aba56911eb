#include "qnoise/transformer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "qnoise/layer_kernel.h"
#include "qnoise/error.h"
#include "qnoise/layer_factory.h"

namespace qnoise {

at::Tensor causal_mask(int64_t length, const at::Device& device) {
  return torch::ones({length, length}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(1);
}

MultiheadSelfAttentionImpl::MultiheadSelfAttentionImpl(const MultiheadSelfAttentionOptions& options_)
    : options(options_) {
  QNOISE_CHECK(options.d_model() > 0 && options.heads() > 0, "attention: d_model (", options.d_model(),
               ") and heads (", options.heads(), ") must be positive");
  QNOISE_CHECK(options.d_model() % options.heads() == 0, "attention: d_model ", options.d_model(),
               " is not divisible by heads ", options.heads());
  QNOISE_CHECK(options.dropout() >= 0 && options.dropout() < 1, "attention: dropout must be in [0, 1)");
  auto linear = [&] { return make_linear(torch::nn::LinearOptions(options.d_model(), options.d_model()).bias(options.bias())); };
  q = register_module("q", linear());
  k = register_module("k", linear());
  v = register_module("v", linear());
  out = register_module("out", linear());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> MultiheadSelfAttentionImpl::project(const at::Tensor& x) {
  const int64_t batch = x.size(0), length = x.size(1), heads = options.heads();
  const int64_t head_dim = options.d_model() / heads;
  auto split = [&](const at::Tensor& t) { return t.view({batch, length, heads, head_dim}).transpose(1, 2); };
  // Scale q before the product (as fairseq does) so the scores never need a second pass.
  return {split(run_layer(q, x) * (1.0 / std::sqrt(static_cast<double>(head_dim)))), split(run_layer(k, x)),
          split(run_layer(v, x))};
}

at::Tensor MultiheadSelfAttentionImpl::forward(const at::Tensor& x, bool causal, const at::Tensor& key_padding_mask) {
  QNOISE_CHECK(x.dim() == 3 && x.size(2) == options.d_model(), "attention: expected [batch, length, ",
               options.d_model(), "], got ", x.sizes());
  const int64_t batch = x.size(0), length = x.size(1);
  auto [query, key, value] = project(x);
  auto scores = torch::matmul(query, key.transpose(-2, -1));  // [batch, heads, length, length]
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (causal) scores = scores.masked_fill(causal_mask(length, x.device()), neg_inf);
  if (key_padding_mask.defined()) {
    QNOISE_CHECK(key_padding_mask.dim() == 2 && key_padding_mask.size(0) == batch &&
                     key_padding_mask.size(1) == length,
                 "attention: key_padding_mask must be [", batch, ", ", length, "], got ", key_padding_mask.sizes());
    scores = scores.masked_fill(key_padding_mask.to(torch::kBool).view({batch, 1, 1, length}), neg_inf);
  }
  auto probs = torch::softmax(scores, -1);
  if (options.dropout() > 0) probs = torch::dropout(probs, options.dropout(), is_training());
  auto context = torch::matmul(probs, value).transpose(1, 2).reshape({batch, length, options.d_model()});
  return run_layer(out, context);
}

at::Tensor MultiheadSelfAttentionImpl::forward_cached(const at::Tensor& x, AttentionCache& cache) {
  QNOISE_CHECK(x.dim() == 3 && x.size(2) == options.d_model(), "attention: expected [batch, n, ",
               options.d_model(), "], got ", x.sizes());
  const int64_t batch = x.size(0), n = x.size(1);
  auto [query, key, value] = project(x);
  const int64_t seen = cache.keys.defined() ? cache.keys.size(2) : 0;
  cache.keys = seen > 0 ? torch::cat({cache.keys, key}, 2) : key.contiguous();
  cache.values = seen > 0 ? torch::cat({cache.values, value}, 2) : value.contiguous();
  auto scores = torch::matmul(query, cache.keys.transpose(-2, -1));  // [batch, heads, n, seen + n]
  if (n > 1) {
    // New position i (absolute seen + i) sees keys 0 .. seen + i.
    const auto mask = torch::ones({n, seen + n}, torch::TensorOptions().dtype(torch::kBool).device(x.device()))
                          .triu(seen + 1);
    scores = scores.masked_fill(mask, -std::numeric_limits<double>::infinity());
  }
  auto context = torch::matmul(torch::softmax(scores, -1), cache.values).transpose(1, 2).reshape({batch, n, options.d_model()});
  return run_layer(out, context);
}

TransformerLayerImpl::TransformerLayerImpl(const TransformerLayerOptions& options_) : options(options_) {
  QNOISE_CHECK(options.ffn_dim() > 0, "transformer layer: ffn_dim must be positive");
  QNOISE_CHECK(options.activation() == "gelu" || options.activation() == "relu",
               "transformer layer: activation must be gelu or relu, got '", options.activation(), "'");
  for (double p : {options.dropout(), options.activation_dropout()})
    QNOISE_CHECK(p >= 0 && p < 1, "transformer layer: dropout must be in [0, 1), got ", p);
  const int64_t d = options.d_model();
  attn_norm = register_module("attn_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  attn = register_module("attn", MultiheadSelfAttention(MultiheadSelfAttentionOptions(d, options.heads())
                                                            .dropout(options.attention_dropout())));
  ffn_norm = register_module("ffn_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  fc1 = register_module("fc1", make_linear(torch::nn::LinearOptions(d, options.ffn_dim())));
  fc2 = register_module("fc2", make_linear(torch::nn::LinearOptions(options.ffn_dim(), d)));
}

at::Tensor TransformerLayerImpl::forward(const at::Tensor& x, bool causal, const at::Tensor& key_padding_mask) {
  const bool train = is_training();
  auto h = attn->forward(attn_norm->forward(x), causal, key_padding_mask);
  auto y = x + torch::dropout(h, options.dropout(), train);
  h = run_layer(fc1, ffn_norm->forward(y));
  h = options.activation() == "gelu" ? torch::gelu(h) : torch::relu(h);
  if (options.activation_dropout() > 0) h = torch::dropout(h, options.activation_dropout(), train);
  return y + torch::dropout(run_layer(fc2, h), options.dropout(), train);
}

at::Tensor TransformerLayerImpl::forward_cached(const at::Tensor& x, AttentionCache& cache) {
  QNOISE_CHECK(!is_training(), "transformer layer: cached decoding is for eval mode");
  auto y = x + attn->forward_cached(attn_norm->forward(x), cache);
  auto h = run_layer(fc1, ffn_norm->forward(y));
  h = options.activation() == "gelu" ? torch::gelu(h) : torch::relu(h);
  return y + run_layer(fc2, h);
}

std::vector<int64_t> sharing_schedule(int64_t depth, int64_t share_every, bool share_cycle) {
  QNOISE_CHECK(depth > 0 && share_every > 0, "transformer stack: depth and share_every must be positive");
  const int64_t n_unique = (depth + share_every - 1) / share_every;
  std::vector<int64_t> schedule;
  for (int64_t d = 0; d < depth; ++d) schedule.push_back(share_cycle ? d % n_unique : d / share_every);
  return schedule;
}

TransformerStackImpl::TransformerStackImpl(const TransformerStackOptions& options_) : options(options_) {
  QNOISE_CHECK(options.depth() > 0, "transformer stack: depth must be positive, got ", options.depth());
  QNOISE_CHECK(options.share_every() > 0, "transformer stack: share_every must be positive");
  QNOISE_CHECK(options.layer_drop() >= 0 && options.layer_drop() <= 1,
               "transformer stack: layer_drop must be in [0, 1], got ", options.layer_drop());
  schedule_ = sharing_schedule(options.depth(), options.share_every(), options.share_cycle());
  const int64_t n_unique = *std::max_element(schedule_.begin(), schedule_.end()) + 1;
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < n_unique; ++i) {
    unique_.push_back(TransformerLayer(options.layer()));
    layers->push_back(unique_.back());
  }
  if (options.final_norm())
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({options.layer().d_model()})));
}

void TransformerStackImpl::set_kept_layers(std::vector<int64_t> depths) {
  std::sort(depths.begin(), depths.end());
  QNOISE_CHECK(std::adjacent_find(depths.begin(), depths.end()) == depths.end(),
               "transformer stack: kept layers must be distinct");
  for (int64_t d : depths)
    QNOISE_CHECK(d >= 0 && d < options.depth(), "transformer stack: kept layer ", d, " is outside [0, ",
                 options.depth(), ")");
  kept_layers_ = std::move(depths);
}

at::Tensor TransformerStackImpl::forward(const at::Tensor& x, bool causal, const at::Tensor& key_padding_mask) {
  std::vector<int64_t> run;
  if (is_training()) {
    for (int64_t depth = 0; depth < options.depth(); ++depth) {
      // One draw from torch's generator per depth, so torch::manual_seed makes runs repeatable.
      if (options.layer_drop() > 0 && torch::rand({1}).item<double>() < options.layer_drop()) continue;
      run.push_back(depth);
    }
  } else if (!kept_layers_.empty()) {
    run = kept_layers_;
  } else {
    for (int64_t depth = 0; depth < options.depth(); ++depth) run.push_back(depth);
  }
  at::Tensor h = x;
  for (int64_t depth : run) h = unique_[schedule_[depth]]->forward(h, causal, key_padding_mask);
  layers_run_ = static_cast<int64_t>(run.size());
  return norm ? norm->forward(h) : h;
}

at::Tensor TransformerStackImpl::forward_cached(const at::Tensor& x, DecoderCache& cache) {
  QNOISE_CHECK(!is_training(), "transformer stack: cached decoding is for eval mode");
  std::vector<int64_t> run = kept_layers_;
  if (run.empty())
    for (int64_t depth = 0; depth < options.depth(); ++depth) run.push_back(depth);
  if (cache.layers.empty()) cache.layers.resize(run.size());
  QNOISE_CHECK(cache.layers.size() == run.size(), "transformer stack: the cache holds ", cache.layers.size(),
               " layers, this stack runs ", run.size());
  at::Tensor h = x;
  for (size_t i = 0; i < run.size(); ++i) h = unique_[schedule_[run[i]]]->forward_cached(h, cache.layers[i]);
  return norm ? norm->forward(h) : h;
}

}  // namespace qnoise
