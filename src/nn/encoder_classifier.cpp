#include "qnoise/encoder_classifier.h"

#include <torch/torch.h>

#include <algorithm>

#include "qnoise/layer_kernel.h"
#include "qnoise/error.h"
#include "qnoise/layer_factory.h"

namespace qnoise {

EncoderClassifierImpl::EncoderClassifierImpl(const EncoderClassifierOptions& options_) : options(options_) {
  const int64_t d = options.d_model();
  QNOISE_CHECK(options.vocab_size() > 0 && options.num_classes() > 0,
               "encoder classifier: vocab_size and num_classes must be positive");
  QNOISE_CHECK(d > 0 && options.heads() > 0 && d % options.heads() == 0, "encoder classifier: d_model ", d,
               " is not divisible by heads ", options.heads());
  QNOISE_CHECK(options.layers() > 0 && options.max_positions() > 0 && options.segments() >= 0,
               "encoder classifier: layers and max_positions must be positive, segments >= 0");
  QNOISE_CHECK(options.padding_idx() >= 0 && options.padding_idx() < options.vocab_size(),
               "encoder classifier: padding_idx must be a vocabulary id");
  tokens = register_module("tokens", make_embedding(
      torch::nn::EmbeddingOptions(options.vocab_size(), d).padding_idx(options.padding_idx())));
  if (options.segments() > 0)
    segments = register_module("segments", make_embedding(torch::nn::EmbeddingOptions(options.segments(), d)));
  positions = register_module("positions", make_embedding(torch::nn::EmbeddingOptions(options.max_positions(), d)));
  if (!constructing_weightless()) {
    // BERT/RoBERTa initialisation N(0, 0.02) for the embeddings.
    torch::NoGradGuard no_grad;
    tokens->weight.normal_(0, 0.02);
    tokens->weight[options.padding_idx()].zero_();
    positions->weight.normal_(0, 0.02);
    if (segments) segments->weight.normal_(0, 0.02);
  }
  embed_norm = register_module("embed_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  auto layer = TransformerLayerOptions(d, options.heads(), options.ffn_dim())
                   .dropout(options.dropout())
                   .attention_dropout(options.attention_dropout())
                   .activation(options.activation());
  encoder = register_module("encoder", TransformerStack(TransformerStackOptions(layer, options.layers())
                                                            .layer_drop(options.layer_drop())
                                                            .share_every(options.share_every())
                                                            .share_cycle(options.share_cycle())));
  QNOISE_CHECK(options.pooling() == "cls" || options.pooling() == "cls+pair",
               "encoder classifier: pooling must be cls or cls+pair, got '", options.pooling(), "'");
  QNOISE_CHECK(options.pooling() == "cls" || options.segments() == 2,
               "encoder classifier: cls+pair pooling needs 2 segment embeddings");
  const int64_t features = options.pooling() == "cls" ? d : 3 * d;
  dense = register_module("dense", make_linear(torch::nn::LinearOptions(features, d)));
  classifier = register_module("classifier", make_linear(torch::nn::LinearOptions(d, options.num_classes())));
}

at::Tensor EncoderClassifierImpl::encode(const at::Tensor& ids, const at::Tensor& segment_ids) {
  QNOISE_CHECK(ids.dim() == 2 && ids.size(1) > 0, "encoder classifier: tokens must be [batch, length], got ",
               ids.sizes());
  const int64_t length = ids.size(1);
  QNOISE_CHECK(length <= options.max_positions(), "encoder classifier: length ", length,
               " exceeds max_positions ", options.max_positions());
  // Positions through the layer: only the rows asked for are decoded when it runs compressed.
  auto x = run_layer(tokens, ids) + run_layer(positions, at::arange(length, ids.options().dtype(at::kLong))).unsqueeze(0);
  if (segment_ids.defined()) {
    QNOISE_CHECK(segments, "encoder classifier: segment ids given but the model has no segment embeddings");
    QNOISE_CHECK(segment_ids.sizes() == ids.sizes(), "encoder classifier: segments ", segment_ids.sizes(),
                 " must match tokens ", ids.sizes());
    x = x + run_layer(segments, segment_ids);
  } else if (segments) {
    x = x + layer_weight(*segments, segments->weight)[0];
  }
  x = torch::dropout(embed_norm->forward(x), options.dropout(), is_training());
  auto padding = ids.eq(options.padding_idx());
  return encoder->forward(x, /*causal=*/false, padding);
}

namespace {

// Mean of the hidden states [batch, length, d] over the positions where `mask` [batch, length] is
// true (at least one per row: <cls> or a </s> is always there).
at::Tensor masked_mean(const at::Tensor& hidden, const at::Tensor& mask) {
  auto weights = mask.to(hidden.scalar_type()).unsqueeze(-1);
  return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1);
}

}  // namespace

at::Tensor EncoderClassifierImpl::forward(const at::Tensor& ids, const at::Tensor& segment_ids) {
  const bool pair = options.pooling() == "cls+pair";
  QNOISE_CHECK(!pair || segment_ids.defined(), "encoder classifier: cls+pair pooling needs segment ids");
  const at::Tensor hidden = encode(ids, segment_ids);
  auto cls = hidden.select(1, 0);
  if (pair) {
    const auto real = ids.ne(options.padding_idx());
    const auto u = masked_mean(hidden, real & segment_ids.eq(0));
    const auto v = masked_mean(hidden, real & segment_ids.eq(1));
    cls = torch::cat({cls, u * v, (u - v).abs()}, 1);
  }
  const bool train = is_training();
  auto h = torch::tanh(run_layer(dense, torch::dropout(cls, options.dropout(), train)));
  return run_layer(classifier, torch::dropout(h, options.dropout(), train));
}

PairBatch encode_pairs(const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>& pairs,
                       const PairEncoding& encoding) {
  QNOISE_CHECK(!pairs.empty(), "encode_pairs: no pairs");
  QNOISE_CHECK(encoding.max_length >= 5, "encode_pairs: max_length must be at least 5, got ", encoding.max_length);
  const int64_t budget = encoding.max_length - 3;  // <cls>, two <sep>
  std::vector<std::vector<int64_t>> rows, segs;
  int64_t longest = 0;
  for (const auto& [premise, hypothesis] : pairs) {
    auto a = static_cast<int64_t>(premise.size()), b = static_cast<int64_t>(hypothesis.size());
    while (a + b > budget) (a >= b ? a : b) -= 1;
    std::vector<int64_t> row{encoding.cls_id};
    row.insert(row.end(), premise.begin(), premise.begin() + a);
    row.push_back(encoding.sep_id);
    std::vector<int64_t> seg(row.size(), 0);
    row.insert(row.end(), hypothesis.begin(), hypothesis.begin() + b);
    row.push_back(encoding.sep_id);
    seg.resize(row.size(), 1);
    longest = std::max<int64_t>(longest, static_cast<int64_t>(row.size()));
    rows.push_back(std::move(row));
    segs.push_back(std::move(seg));
  }
  const auto batch = static_cast<int64_t>(pairs.size());
  PairBatch out;
  out.tokens = torch::full({batch, longest}, encoding.pad_id, torch::kLong);
  out.segments = torch::zeros({batch, longest}, torch::kLong);
  out.lengths = torch::empty({batch}, torch::kLong);
  auto tok = out.tokens.accessor<int64_t, 2>();
  auto sg = out.segments.accessor<int64_t, 2>();
  auto len = out.lengths.accessor<int64_t, 1>();
  for (int64_t i = 0; i < batch; ++i) {
    len[i] = static_cast<int64_t>(rows[i].size());
    for (int64_t t = 0; t < len[i]; ++t) {
      tok[i][t] = rows[i][t];
      sg[i][t] = segs[i][t];
    }
  }
  return out;
}

}  // namespace qnoise
