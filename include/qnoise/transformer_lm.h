#pragma once
// Decoder-only Transformer language model, as the Quant-Noise paper's fairseq transformer_lm:
// token embedding scaled by sqrt(d_model) (plain, or adaptive input), sinusoidal or learned
// positions, a pre-norm causal TransformerStack (LayerDrop, weight sharing), a final LayerNorm and
// an output layer tied to the input embedding (plain: logits = h E^T; adaptive: an adaptive
// softmax tied to the adaptive input).
//
// Module names: "embed" (Embedding) or "adaptive_input.{embeddings,projections}.i",
// "positions" (learned only), "decoder.layers.<i>.{attn.{q,k,v,out},fc1,fc2,...}",
// "decoder.norm", "adaptive_softmax.cluster" (+ own weights when untied).
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "qnoise/adaptive_softmax.h"
#include "qnoise/transformer.h"

namespace qnoise {

struct TransformerLmOptions {
  TransformerLmOptions(int64_t vocab_size, int64_t d_model, int64_t heads, int64_t ffn_dim, int64_t layers)
      : vocab_size_(vocab_size), d_model_(d_model), heads_(heads), ffn_dim_(ffn_dim), layers_(layers) {}
  TORCH_ARG(int64_t, vocab_size);
  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(int64_t, ffn_dim);
  TORCH_ARG(int64_t, layers);
  TORCH_ARG(int64_t, max_positions) = 1024;
  TORCH_ARG(bool, learned_positions) = false;  // false: fixed sinusoidal (fairseq default)
  TORCH_ARG(double, dropout) = 0.1;
  TORCH_ARG(double, attention_dropout) = 0.0;
  TORCH_ARG(double, activation_dropout) = 0.0;
  TORCH_ARG(std::string, activation) = "gelu";
  TORCH_ARG(double, layer_drop) = 0.0;
  TORCH_ARG(int64_t, share_every) = 1;
  TORCH_ARG(bool, share_cycle) = false;  // TransformerStackOptions::share_cycle
  TORCH_ARG(bool, scale_embedding) = true;     // multiply token embeddings by sqrt(d_model)
  TORCH_ARG(bool, adaptive_input) = false;
  TORCH_ARG(bool, adaptive_softmax) = false;
  TORCH_ARG(bool, tie_weights) = true;         // output layer shares the input embedding's weights
  TORCH_ARG(std::vector<int64_t>, cutoffs) = std::vector<int64_t>{};  // for the adaptive layers
  TORCH_ARG(double, adaptive_factor) = 4.0;
  TORCH_ARG(int64_t, padding_idx) = 0;         // <pad>; -1 for none
};

class TransformerLmImpl : public torch::nn::Module {
 public:
  explicit TransformerLmImpl(const TransformerLmOptions& options);

  // tokens: int64 [batch, length] -> final hidden states [batch, length, d_model].
  at::Tensor forward(const at::Tensor& tokens);
  // Log-probabilities over the vocabulary for hidden states [..., d_model] -> [..., vocab].
  at::Tensor output_log_probs(const at::Tensor& hidden);
  // Mean negative log-likelihood (nats) of targets [batch, length]; perplexity = exp(loss).
  at::Tensor loss(const at::Tensor& tokens, const at::Tensor& targets);
  // Log-probabilities of the next token after each sequence: [batch, vocab].
  at::Tensor log_probs(const at::Tensor& tokens);
  // The same for the sequence continued by `tokens` [batch, n] after the cache.length positions
  // `cache` has seen (start with an empty cache); eval mode. Equals log_probs() of the whole
  // sequence, at O(length) per token instead of O(length^2).
  at::Tensor log_probs_cached(const at::Tensor& tokens, DecoderCache& cache);

  TransformerLmOptions options;
  torch::nn::Embedding embed{nullptr};       // plain input
  AdaptiveInput adaptive_input{nullptr};
  torch::nn::Embedding positions{nullptr};   // learned positions
  TransformerStack decoder{nullptr};
  torch::nn::Linear output{nullptr};         // plain, untied output
  AdaptiveSoftmax adaptive_softmax{nullptr};

 private:
  // Token embeddings plus the positions offset .. offset + length - 1, dropout in training.
  at::Tensor embed_positions(const at::Tensor& tokens, int64_t offset);
  at::Tensor sinusoids_;  // [max_positions, d_model], a buffer
};
TORCH_MODULE(TransformerLm);

// fairseq's sinusoidal table: [length, dim], sin in the first half, cos in the second; rows
// offset .. offset + length - 1.
at::Tensor sinusoidal_positions(int64_t length, int64_t dim, int64_t offset = 0);

// Parameters of a module, each tensor counted once even when shared.
int64_t count_parameters(const torch::nn::Module& module);

}  // namespace qnoise
