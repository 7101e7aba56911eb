#include "train/task_models.h"

#include <algorithm>

#include "qnoise/efficientnet.h"
#include "qnoise/error.h"
#include "qnoise/kjv_corpus.h"
#include "train/task_config.h"

namespace qnoise::detail {

namespace {

// Configurations come from files (a .qnz's metadata, --config): every size is bounded before a
// model is built, so a file cannot ask for a million layers or a 10 GB stem.
template <typename T>
T bounded(const nlohmann::json& section, const char* key, T low, T high, const char* what) {
  const T value = config_value<T>(section, key);
  QNOISE_CHECK(value >= low && value <= high, what, " ", key, " = ", value, " is outside ", low, "..", high);
  return value;
}

void check_rate(const nlohmann::json& section, const char* key, const char* what) {
  const double rate = config_value<double>(section, key);
  QNOISE_CHECK(rate >= 0.0 && rate < 1.0, what, " ", key, " = ", rate, " must be in [0, 1)");
}

// The Transformer families' sizes, and their weights' count (at most 2^32 parameters).
void check_transformer_bounds(const nlohmann::json& m, int64_t vocab_size, const char* what) {
  const auto d_model = bounded<int64_t>(m, "d_model", 1, 16384, what);
  const auto heads = bounded<int64_t>(m, "heads", 1, 256, what);
  QNOISE_CHECK(d_model % heads == 0, what, " d_model = ", d_model, " is not a multiple of heads = ", heads);
  const auto ffn = bounded<int64_t>(m, "ffn_dim", 1, 131072, what);
  const auto layers = bounded<int64_t>(m, "layers", 1, 256, what);
  bounded<int64_t>(m, "share_every", 1, layers, what);
  for (const char* rate : {"dropout", "attention_dropout", "layer_drop"}) check_rate(m, rate, what);
  const double parameters = static_cast<double>(layers) * d_model * (4.0 * d_model + 2.0 * ffn) +
                            2.0 * static_cast<double>(vocab_size) * d_model;
  QNOISE_CHECK(parameters <= 4294967296.0, what, " model of ", parameters, " parameters is beyond 2^32");
}

}  // namespace

TransformerLm make_language_model(const nlohmann::json& config, int64_t vocab_size) {
  const auto& m = config.at("model");
  check_transformer_bounds(m, vocab_size, "lm task: model");
  bounded<double>(m, "adaptive_factor", 1.0, 1024.0, "lm task: model");
  const bool adaptive_input = config_value<bool>(m, "adaptive_input");
  const bool adaptive_softmax = config_value<bool>(m, "adaptive_softmax");
  std::vector<int64_t> cutoffs;
  if (adaptive_input || adaptive_softmax) {
    // Cut-offs beyond the vocabulary (a small corpus) are dropped rather than failing.
    for (int64_t c : config_value<std::vector<int64_t>>(m, "cutoffs"))
      if (c < vocab_size) cutoffs.push_back(c);
    QNOISE_CHECK(!cutoffs.empty(), "lm task: every adaptive cut-off is beyond the vocabulary of ", vocab_size,
                 " tokens");
  }
  const auto seq_len = bounded<int64_t>(config, "seq_len", 1, 65536, "lm task:");
  return TransformerLm(TransformerLmOptions(vocab_size, config_value<int64_t>(m, "d_model"),
                                            config_value<int64_t>(m, "heads"), config_value<int64_t>(m, "ffn_dim"),
                                            config_value<int64_t>(m, "layers"))
                           .max_positions(std::max<int64_t>(1024, seq_len))
                           .learned_positions(config_value<bool>(m, "learned_positions"))
                           .dropout(config_value<double>(m, "dropout"))
                           .attention_dropout(config_value<double>(m, "attention_dropout"))
                           .layer_drop(config_value<double>(m, "layer_drop"))
                           .share_every(config_value<int64_t>(m, "share_every"))
                           .share_cycle(config_value<bool>(m, "share_cycle"))
                           .adaptive_input(adaptive_input)
                           .adaptive_softmax(adaptive_softmax)
                           .cutoffs(cutoffs)
                           .adaptive_factor(config_value<double>(m, "adaptive_factor")));
}

std::vector<std::string> language_model_recomputed_buffers() { return {"sinusoids"}; }

EncoderClassifier make_pair_classifier(const nlohmann::json& config, int64_t vocab_size, int64_t n_labels) {
  const auto& m = config.at("model");
  check_transformer_bounds(m, vocab_size, "pairs task: model");
  bounded<int64_t>(config, "max_length", 2, 65536, "pairs task:");
  return EncoderClassifier(EncoderClassifierOptions(vocab_size, config_value<int64_t>(m, "d_model"),
                                                    config_value<int64_t>(m, "heads"),
                                                    config_value<int64_t>(m, "ffn_dim"),
                                                    config_value<int64_t>(m, "layers"), n_labels)
                               .max_positions(config_value<int64_t>(config, "max_length"))
                               .padding_idx(Vocabulary::kPadId)
                               .dropout(config_value<double>(m, "dropout"))
                               .attention_dropout(config_value<double>(m, "attention_dropout"))
                               .layer_drop(config_value<double>(m, "layer_drop"))
                               .share_every(config_value<int64_t>(m, "share_every"))
                               .share_cycle(config_value<bool>(m, "share_cycle"))
                               .pooling(config_value<std::string>(m, "pooling")));
}

std::shared_ptr<torch::nn::Module> make_image_model(const nlohmann::json& config, int64_t n_classes) {
  const auto& model = config.at("model");
  const auto arch = config_value<std::string>(model, "arch");
  // Every key, whichever architecture reads it: a file holding absurd values is a damaged file.
  check_rate(model, "dropout", "image task: model");
  bounded<double>(model, "width_multiplier", 0.01, 8.0, "image task: model");
  bounded<double>(model, "depth_multiplier", 0.01, 8.0, "image task: model");
  bounded<int64_t>(model, "stem_stride", 1, 4, "image task: model");
  bounded<int64_t>(model, "channels", 1, 4096, "image task: model");
  if (arch == "efficientnet")
    return EfficientNet(EfficientNetOptions()
                            .n_classes(n_classes)
                            .width_multiplier(config_value<double>(model, "width_multiplier"))
                            .depth_multiplier(config_value<double>(model, "depth_multiplier"))
                            .stem_stride(config_value<int64_t>(model, "stem_stride"))
                            .dropout(config_value<double>(model, "dropout")))
        .ptr();
  if (arch == "small-cnn")
    return SmallCnn(SmallCnnOptions().n_classes(n_classes).channels(config_value<int64_t>(model, "channels"))).ptr();
  throw Error("image task: unknown model arch '" + arch + "' (efficientnet or small-cnn)");
}

PairEncoding pair_encoding(const nlohmann::json& config, const Vocabulary& vocabulary) {
  QNOISE_CHECK(vocabulary.contains(kPairClassToken), "pairs task: the vocabulary has no ", kPairClassToken,
               " token (max_vocab too small?)");
  PairEncoding encoding;
  encoding.cls_id = vocabulary.id(kPairClassToken);
  encoding.sep_id = Vocabulary::kEndOfSentenceId;
  encoding.pad_id = Vocabulary::kPadId;
  encoding.max_length = config_value<int64_t>(config, "max_length");
  return encoding;
}

std::vector<int64_t> encode_sentence(const Vocabulary& vocabulary, const std::string& text) {
  return vocabulary.encode(tokenize_kjv(text));
}

}  // namespace qnoise::detail
