#pragma once
// Transformer building blocks for the sequence models (fairseq-style, pre-norm).
//
// Attention is written with four plain torch::nn::Linear layers (q, k, v, out) rather than
// torch::nn::MultiheadAttention, so that Quant-Noise (NoisyLayers) and product quantization see
// ordinary Linear layers with names such as "decoder.layers.0.attn.q".
//
// TransformerStack adds the two structured tricks the Quant-Noise paper combines with
// quantization:
//  * LayerDrop: in training each layer is skipped with probability layer_drop (torch's RNG); at
//    inference set_kept_layers({0, 2, ...}) runs only those depths, so a pruned model is cheaper.
//  * weight sharing: groups of share_every adjacent depths use one layer, or with share_cycle the
//    distinct layers repeat in a cycle (depth d runs layer d mod n; 4 depths, share_every 2: layers
//    0 1 0 1), so that pruning every other depth drops whole layers and saves their bytes. Each
//    distinct layer is registered once (module "layers.<i>"), so parameters are counted once and
//    named_modules() lists each shared layer once; schedule() maps depth -> unique layer.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

namespace qnoise {

// Keys and values of the positions already seen, per attention layer run, for decoding a few
// tokens at a time (generation): a step then costs O(length) instead of O(length^2). Eval only.
struct AttentionCache {
  at::Tensor keys, values;  // [batch, heads, seen, head_dim]; undefined before the first step
};
struct DecoderCache {
  std::vector<AttentionCache> layers;  // one per layer run, in order
  int64_t length = 0;                  // positions seen
};

struct MultiheadSelfAttentionOptions {
  MultiheadSelfAttentionOptions(int64_t d_model, int64_t heads) : d_model_(d_model), heads_(heads) {}
  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(double, dropout) = 0.0;  // on the attention probabilities
  TORCH_ARG(bool, bias) = true;
};

class MultiheadSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit MultiheadSelfAttentionImpl(const MultiheadSelfAttentionOptions& options);
  // x: [batch, length, d_model]. causal: position t attends to positions <= t only.
  // key_padding_mask: optional bool [batch, length], true where the key is padding (ignored).
  // Every query must see at least one key. Returns [batch, length, d_model].
  at::Tensor forward(const at::Tensor& x, bool causal = false,
                     const at::Tensor& key_padding_mask = {});
  // Causal attention of the new positions x [batch, n, d_model] over the cached ones and
  // themselves; appends their keys and values to `cache`.
  at::Tensor forward_cached(const at::Tensor& x, AttentionCache& cache);

  MultiheadSelfAttentionOptions options;
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, out{nullptr};

 private:
  // Scaled queries, keys and values of x [batch, length, d_model], each [batch, heads, length, head_dim].
  std::tuple<at::Tensor, at::Tensor, at::Tensor> project(const at::Tensor& x);
};
TORCH_MODULE(MultiheadSelfAttention);

struct TransformerLayerOptions {
  TransformerLayerOptions(int64_t d_model, int64_t heads, int64_t ffn_dim)
      : d_model_(d_model), heads_(heads), ffn_dim_(ffn_dim) {}
  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(int64_t, ffn_dim);
  TORCH_ARG(double, dropout) = 0.1;            // on each residual branch
  TORCH_ARG(double, attention_dropout) = 0.0;  // on attention probabilities
  TORCH_ARG(double, activation_dropout) = 0.0; // after the FFN activation
  TORCH_ARG(std::string, activation) = "gelu";  // "gelu" or "relu"
};

// Pre-norm layer: x + drop(attn(norm(x))), then x + drop(fc2(act(fc1(norm(x))))).
// Submodules: attn_norm, attn (q, k, v, out), ffn_norm, fc1, fc2.
class TransformerLayerImpl : public torch::nn::Module {
 public:
  explicit TransformerLayerImpl(const TransformerLayerOptions& options);
  at::Tensor forward(const at::Tensor& x, bool causal = false,
                     const at::Tensor& key_padding_mask = {});
  at::Tensor forward_cached(const at::Tensor& x, AttentionCache& cache);  // causal, eval

  TransformerLayerOptions options;
  torch::nn::LayerNorm attn_norm{nullptr}, ffn_norm{nullptr};
  MultiheadSelfAttention attn{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(TransformerLayer);

struct TransformerStackOptions {
  TransformerStackOptions(TransformerLayerOptions layer, int64_t depth) : layer_(std::move(layer)), depth_(depth) {}
  TORCH_ARG(TransformerLayerOptions, layer);
  TORCH_ARG(int64_t, depth);            // layers run per forward (before LayerDrop / pruning)
  TORCH_ARG(double, layer_drop) = 0.0;  // probability of skipping a layer in training
  TORCH_ARG(int64_t, share_every) = 1;  // depths sharing one layer's weights
  TORCH_ARG(bool, share_cycle) = false;  // sharing depths d, d + n, ... (n distinct layers), not adjacent ones
  TORCH_ARG(bool, final_norm) = true;   // LayerNorm "norm" after the last layer (pre-norm needs it)
};

class TransformerStackImpl : public torch::nn::Module {
 public:
  explicit TransformerStackImpl(const TransformerStackOptions& options);
  at::Tensor forward(const at::Tensor& x, bool causal = false,
                     const at::Tensor& key_padding_mask = {});
  // Causal, eval mode: the new positions x [batch, n, d_model] after the `cache.length` already
  // seen (the layers eval mode runs); updates the cache but not cache.length (the caller's).
  at::Tensor forward_cached(const at::Tensor& x, DecoderCache& cache);

  // Depths to run in eval mode (sorted, unique, each < depth); empty: all. Training ignores it
  // (LayerDrop decides there).
  void set_kept_layers(std::vector<int64_t> depths);
  const std::vector<int64_t>& kept_layers() const { return kept_layers_; }
  // Depth -> index into `layers`.
  const std::vector<int64_t>& schedule() const { return schedule_; }
  // How many layers the last forward ran.
  int64_t layers_run() const { return layers_run_; }

  TransformerStackOptions options;
  torch::nn::ModuleList layers{nullptr};  // the distinct layers, each registered once
  torch::nn::LayerNorm norm{nullptr};     // null when !final_norm

 private:
  std::vector<TransformerLayer> unique_;
  std::vector<int64_t> schedule_;
  std::vector<int64_t> kept_layers_;
  int64_t layers_run_ = 0;
};
TORCH_MODULE(TransformerStack);

// Depth -> distinct layer of a stack of `depth` layers shared as TransformerStackOptions says.
std::vector<int64_t> sharing_schedule(int64_t depth, int64_t share_every, bool share_cycle);

// Bool [length, length], true above the diagonal (the future positions a query may not see).
at::Tensor causal_mask(int64_t length, const at::Device& device = at::kCPU);

}  // namespace qnoise
