#include "qnoise/adaptive_softmax.h"

#include <torch/torch.h>

#include <cmath>
#include <string>

#include "qnoise/layer_kernel.h"
#include "qnoise/error.h"
#include "qnoise/layer_factory.h"

namespace qnoise {

void check_adaptive_options(const AdaptiveOptions& options) {
  QNOISE_CHECK(options.vocab_size() > 0 && options.d_model() > 0, "adaptive: vocab_size and d_model must be positive");
  QNOISE_CHECK(!options.cutoffs().empty(), "adaptive: needs at least one cut-off");
  QNOISE_CHECK(options.factor() >= 1, "adaptive: factor must be >= 1, got ", options.factor());
  int64_t previous = 0;
  for (int64_t c : options.cutoffs()) {
    QNOISE_CHECK(c > previous, "adaptive: cut-offs must be strictly increasing and positive, got ", c,
                 " after ", previous);
    QNOISE_CHECK(c < options.vocab_size(), "adaptive: cut-off ", c, " must be below the vocabulary size ",
                 options.vocab_size());
    previous = c;
  }
  const auto last = static_cast<int64_t>(options.cutoffs().size());
  QNOISE_CHECK(band_dim(options, last) > 0, "adaptive: d_model ", options.d_model(), " / factor^", last,
               " leaves no dimension for the last band");
}

std::vector<int64_t> band_edges(const AdaptiveOptions& options) {
  std::vector<int64_t> edges{0};
  edges.insert(edges.end(), options.cutoffs().begin(), options.cutoffs().end());
  edges.push_back(options.vocab_size());
  return edges;
}

int64_t band_dim(const AdaptiveOptions& options, int64_t band) {
  return static_cast<int64_t>(std::floor(options.d_model() / std::pow(options.factor(), band)));
}

AdaptiveInputImpl::AdaptiveInputImpl(const AdaptiveOptions& options_) : options(options_) {
  check_adaptive_options(options);
  const auto edges = band_edges(options);
  auto embedding_list = register_module("embeddings", torch::nn::ModuleList());
  auto projection_list = register_module("projections", torch::nn::ModuleList());
  for (size_t i = 0; i + 1 < edges.size(); ++i) {
    const int64_t size = edges[i + 1] - edges[i], dim = band_dim(options, static_cast<int64_t>(i));
    auto embedding_options = torch::nn::EmbeddingOptions(size, dim);
    const int64_t pad = options.padding_idx();
    if (pad >= edges[i] && pad < edges[i + 1]) embedding_options.padding_idx(pad - edges[i]);
    embeddings.push_back(make_embedding(embedding_options));
    embedding_list->push_back(embeddings.back());
    if (!constructing_weightless()) {
      // fairseq's initialisation: N(0, dim^-1/2) so the sqrt(d) input scale gives unit variance.
      torch::NoGradGuard no_grad;
      embeddings.back()->weight.normal_(0, std::pow(static_cast<double>(dim), -0.5));
      if (pad >= edges[i] && pad < edges[i + 1]) embeddings.back()->weight[pad - edges[i]].zero_();
    }
    projections.push_back(make_linear(torch::nn::LinearOptions(dim, options.d_model()).bias(false)));
    projection_list->push_back(projections.back());
  }
}

at::Tensor AdaptiveInputImpl::forward(const at::Tensor& tokens) {
  const auto edges = band_edges(options);
  auto flat = tokens.reshape({-1});
  auto out = torch::zeros({flat.size(0), options.d_model()},
                          projections[0]->weight.options());
  for (size_t i = 0; i + 1 < edges.size(); ++i) {
    auto rows = ((flat >= edges[i]) & (flat < edges[i + 1])).nonzero().squeeze(1);
    if (rows.numel() == 0) continue;
    auto ids = flat.index_select(0, rows) - edges[i];
    out = out.index_copy(0, rows, run_layer(projections[i], run_layer(embeddings[i], ids)));
  }
  auto shape = tokens.sizes().vec();
  shape.push_back(options.d_model());
  return out.view(shape);
}

AdaptiveSoftmaxImpl::AdaptiveSoftmaxImpl(const AdaptiveOptions& options_) : options(options_) {
  build(true);
}

AdaptiveSoftmaxImpl::AdaptiveSoftmaxImpl(const AdaptiveOptions& options_, AdaptiveInput input)
    : options(options_), input_(std::move(input)) {
  QNOISE_CHECK(input_, "adaptive softmax: tied input is null");
  const auto& other = input_->options;
  QNOISE_CHECK(other.vocab_size() == options.vocab_size() && other.d_model() == options.d_model() &&
                   other.cutoffs() == options.cutoffs() && other.factor() == options.factor(),
               "adaptive softmax: tied input must have the same vocabulary, d_model, cut-offs and factor");
  build(false);
}

void AdaptiveSoftmaxImpl::build(bool own_weights) {
  check_adaptive_options(options);
  edges_ = band_edges(options);
  const int64_t d = options.d_model(), n_tail = static_cast<int64_t>(options.cutoffs().size());
  cluster = register_module("cluster", make_linear(torch::nn::LinearOptions(d, n_tail).bias(false)));
  if (!own_weights) return;
  head = register_module("head", make_linear(torch::nn::LinearOptions(d, edges_[1]).bias(false)));
  auto proj_list = register_module("tail_proj", torch::nn::ModuleList());
  auto out_list = register_module("tail_out", torch::nn::ModuleList());
  for (int64_t j = 0; j < n_tail; ++j) {
    const int64_t dim = band_dim(options, j + 1), size = edges_[j + 2] - edges_[j + 1];
    tail_proj.push_back(make_linear(torch::nn::LinearOptions(d, dim).bias(false)));
    tail_out.push_back(make_linear(torch::nn::LinearOptions(dim, size).bias(false)));
    proj_list->push_back(tail_proj.back());
    out_list->push_back(tail_out.back());
  }
}

at::Tensor AdaptiveSoftmaxImpl::head_log_probs(const at::Tensor& hidden) {
  auto words = input_ ? tied_linear(*input_->embeddings[0], input_->embeddings[0]->weight, hidden) : run_layer(head, hidden);
  return torch::log_softmax(torch::cat({words, run_layer(cluster, hidden)}, -1), -1);
}

at::Tensor AdaptiveSoftmaxImpl::tail_logits(size_t j, const at::Tensor& hidden) {
  if (!input_) {
    auto reduced = run_layer(tail_proj[j], hidden);
    return run_layer(tail_out[j], reduced);
  }
  // projections.(j+1).weight is [d_model, d_i]: hidden @ it is the transposed (tied) projection.
  auto reduced = transposed_linear(*input_->projections[j + 1], input_->projections[j + 1]->weight, hidden);
  return tied_linear(*input_->embeddings[j + 1], input_->embeddings[j + 1]->weight, reduced);
}

at::Tensor AdaptiveSoftmaxImpl::log_probs(const at::Tensor& hidden) {
  QNOISE_CHECK(hidden.dim() == 2 && hidden.size(1) == options.d_model(), "adaptive softmax: expected [n, ",
               options.d_model(), "], got ", hidden.sizes());
  auto head_lp = head_log_probs(hidden);
  const int64_t c1 = edges_[1];
  std::vector<at::Tensor> parts{head_lp.narrow(1, 0, c1)};
  for (size_t j = 0; j + 2 < edges_.size(); ++j)
    parts.push_back(torch::log_softmax(tail_logits(j, hidden), -1) + head_lp.narrow(1, c1 + j, 1));
  return torch::cat(parts, 1);
}

at::Tensor AdaptiveSoftmaxImpl::nll(const at::Tensor& hidden, const at::Tensor& target) {
  QNOISE_CHECK(hidden.dim() == 2 && hidden.size(1) == options.d_model(), "adaptive softmax: expected [n, ",
               options.d_model(), "], got ", hidden.sizes());
  QNOISE_CHECK(target.dim() == 1 && target.size(0) == hidden.size(0), "adaptive softmax: target must be [",
               hidden.size(0), "], got ", target.sizes());
  if (target.numel() > 0)
    QNOISE_CHECK(target.min().item<int64_t>() >= 0 && target.max().item<int64_t>() < options.vocab_size(),
                 "adaptive softmax: target ids must be in [0, ", options.vocab_size(), ")");
  auto head_lp = head_log_probs(hidden);
  const int64_t c1 = edges_[1];
  // In the head, a tail word is represented by its cluster's logit.
  auto head_target = target.clone();
  std::vector<at::Tensor> tail_rows;
  for (size_t j = 0; j + 2 < edges_.size(); ++j) {
    auto in_band = (target >= edges_[j + 1]) & (target < edges_[j + 2]);
    head_target.masked_fill_(in_band, c1 + static_cast<int64_t>(j));
    tail_rows.push_back(in_band.nonzero().squeeze(1));
  }
  auto lp = head_lp.gather(1, head_target.unsqueeze(1)).squeeze(1);
  for (size_t j = 0; j < tail_rows.size(); ++j) {
    const auto& rows = tail_rows[j];
    if (rows.numel() == 0) continue;
    auto tail_lp = torch::log_softmax(tail_logits(j, hidden.index_select(0, rows)), -1);
    auto local = (target.index_select(0, rows) - edges_[j + 1]).unsqueeze(1);
    lp = lp.index_add(0, rows, tail_lp.gather(1, local).squeeze(1));
  }
  return -lp;
}

}  // namespace qnoise
