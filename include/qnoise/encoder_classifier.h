#pragma once
// RoBERTa-style sentence(-pair) classifier: token + optional segment + learned position
// embeddings, LayerNorm, a bidirectional pre-norm TransformerStack (LayerDrop, weight sharing)
// with a key padding mask, then the first position (<cls>) -> dense -> tanh -> classifier
// (optionally with sentence-comparison features, see `pooling`).
//
// Module names: "tokens", "segments", "positions", "embed_norm",
// "encoder.layers.<i>.{attn.{q,k,v,out},fc1,fc2,...}", "encoder.norm", "dense", "classifier".
#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "qnoise/transformer.h"

namespace qnoise {

struct EncoderClassifierOptions {
  EncoderClassifierOptions(int64_t vocab_size, int64_t d_model, int64_t heads, int64_t ffn_dim, int64_t layers,
                           int64_t num_classes)
      : vocab_size_(vocab_size), d_model_(d_model), heads_(heads), ffn_dim_(ffn_dim), layers_(layers),
        num_classes_(num_classes) {}
  TORCH_ARG(int64_t, vocab_size);
  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(int64_t, ffn_dim);
  TORCH_ARG(int64_t, layers);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(int64_t, max_positions) = 512;
  TORCH_ARG(int64_t, segments) = 2;  // segment (token type) embeddings; 0: none (as RoBERTa)
  TORCH_ARG(int64_t, padding_idx) = 0;
  TORCH_ARG(double, dropout) = 0.1;
  TORCH_ARG(double, attention_dropout) = 0.0;
  TORCH_ARG(std::string, activation) = "gelu";
  TORCH_ARG(double, layer_drop) = 0.0;
  TORCH_ARG(int64_t, share_every) = 1;
  TORCH_ARG(bool, share_cycle) = false;  // TransformerStackOptions::share_cycle
  // "cls": RoBERTa's head on the first position. "cls+pair": the head also sees u * v and |u - v|
  // of the mean hidden states u, v of the two sentences (Sentence-BERT's features), which lets a
  // small encoder trained from scratch compare the sentences (with "cls" alone it stayed at chance
  // on KJV next-verse pairs; docs/training.md).
  TORCH_ARG(std::string, pooling) = "cls";
};

class EncoderClassifierImpl : public torch::nn::Module {
 public:
  explicit EncoderClassifierImpl(const EncoderClassifierOptions& options);
  // tokens: int64 [batch, length] (padding_idx marks padding); segments: int64 [batch, length] or
  // undefined (all 0). Returns the final hidden states [batch, length, d_model].
  at::Tensor encode(const at::Tensor& tokens, const at::Tensor& segments = {});
  // Class logits [batch, num_classes]. "cls+pair" pooling needs the segment ids.
  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& segments = {});

  EncoderClassifierOptions options;
  torch::nn::Embedding tokens{nullptr}, segments{nullptr}, positions{nullptr};
  torch::nn::LayerNorm embed_norm{nullptr};
  TransformerStack encoder{nullptr};
  torch::nn::Linear dense{nullptr}, classifier{nullptr};
};
TORCH_MODULE(EncoderClassifier);

struct PairEncoding {
  int64_t cls_id = 0;
  int64_t sep_id = 0;
  int64_t pad_id = 0;
  int64_t max_length = 512;  // including <cls> and both <sep>; at least 5
};

struct PairBatch {
  at::Tensor tokens;    // int64 [batch, length]: <cls> premise <sep> hypothesis <sep> <pad>...
  at::Tensor segments;  // int64 [batch, length]: 0 for <cls> premise <sep>, 1 after (0 on padding)
  at::Tensor lengths;   // int64 [batch]: tokens before the padding
};

// Encodes sentence pairs as one padded batch (length = the longest encoded pair). Pairs longer
// than max_length lose tokens from the end of the longer sentence first (Hugging Face's
// "longest_first"); each sentence keeps at least one token when it had one.
PairBatch encode_pairs(const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>& pairs,
                       const PairEncoding& encoding);

}  // namespace qnoise
