#pragma once
// Adaptive input embeddings (Baevski & Auli 2019) and adaptive softmax (Grave et al. 2017), as
// fairseq's AdaptiveInput / AdaptiveSoftmax. Ids are assumed sorted by decreasing frequency (as
// qnoise::Vocabulary sorts them): cut-offs {c1, c2, ...} split [0, vocab) into bands
// [0, c1), [c1, c2), ..., [c_last, vocab); band i has dimension d_model / factor^i.
//
// AdaptiveInput: band i = Embedding(size_i, d_i) "embeddings.i" -> Linear(d_i, d_model, no bias)
// "projections.i". AdaptiveSoftmax: a head scoring the band-0 words plus one logit per tail
// cluster ("cluster"), and per tail band a projection d_model -> d_i and an output d_i -> size_i.
// When tied to an AdaptiveInput (fairseq's tie_adaptive_weights + tie_adaptive_proj), the head's
// word weights are embeddings.0, tail i's output weights are embeddings.i and its projection is
// projections.i transposed; the softmax then owns only "cluster". The tied weights are read from
// the input modules' `weight` members on every call, so Quant-Noise on them acts on both uses.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

namespace qnoise {

struct AdaptiveOptions {
  AdaptiveOptions(int64_t vocab_size, int64_t d_model, std::vector<int64_t> cutoffs)
      : vocab_size_(vocab_size), d_model_(d_model), cutoffs_(std::move(cutoffs)) {}
  TORCH_ARG(int64_t, vocab_size);
  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(std::vector<int64_t>, cutoffs);  // strictly increasing, each in (0, vocab_size)
  TORCH_ARG(double, factor) = 4.0;           // band i has dimension d_model / factor^i
  TORCH_ARG(int64_t, padding_idx) = -1;      // embedding row kept at zero (-1: none)
};

// Throws qnoise::Error when the cut-offs or the factor are invalid.
void check_adaptive_options(const AdaptiveOptions& options);
// [0, c1, c2, ..., vocab_size]
std::vector<int64_t> band_edges(const AdaptiveOptions& options);
// Dimension of band i.
int64_t band_dim(const AdaptiveOptions& options, int64_t band);

class AdaptiveInputImpl : public torch::nn::Module {
 public:
  explicit AdaptiveInputImpl(const AdaptiveOptions& options);
  // tokens: int64 [...] -> [..., d_model]
  at::Tensor forward(const at::Tensor& tokens);

  AdaptiveOptions options;
  std::vector<torch::nn::Embedding> embeddings;   // registered as "embeddings.i"
  std::vector<torch::nn::Linear> projections;     // registered as "projections.i"
};
TORCH_MODULE(AdaptiveInput);

class AdaptiveSoftmaxImpl : public torch::nn::Module {
 public:
  // Own weights.
  explicit AdaptiveSoftmaxImpl(const AdaptiveOptions& options);
  // Weights tied to `input` (same options required); `input` must outlive no one: it is held.
  AdaptiveSoftmaxImpl(const AdaptiveOptions& options, AdaptiveInput input);

  // hidden: [n, d_model] -> log-probabilities over the whole vocabulary, [n, vocab_size].
  at::Tensor log_probs(const at::Tensor& hidden);
  // hidden: [n, d_model], target: int64 [n] -> exact -log p(target), [n]. Tail bands are only
  // evaluated on the rows whose target falls in them.
  at::Tensor nll(const at::Tensor& hidden, const at::Tensor& target);

  bool tied() const { return static_cast<bool>(input_); }

  AdaptiveOptions options;
  torch::nn::Linear cluster{nullptr};                      // d_model -> number of tail bands
  torch::nn::Linear head{nullptr};                         // untied only: d_model -> c1
  std::vector<torch::nn::Linear> tail_proj, tail_out;      // untied only, one per tail band

 private:
  void build(bool own_weights);
  at::Tensor head_log_probs(const at::Tensor& hidden);
  at::Tensor tail_logits(size_t cluster_index, const at::Tensor& hidden);

  AdaptiveInput input_{nullptr};
  std::vector<int64_t> edges_;
};
TORCH_MODULE(AdaptiveSoftmax);

}  // namespace qnoise
