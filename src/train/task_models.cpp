#include "train/task_models.h"

#include <algorithm>

#include "qnoise/efficientnet.h"
#include "qnoise/error.h"
#include "qnoise/kjv_corpus.h"
#include "train/task_config.h"

namespace qnoise::detail {

TransformerLm make_language_model(const nlohmann::json& config, int64_t vocab_size) {
  const auto& m = config.at("model");
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
  const auto seq_len = config_value<int64_t>(config, "seq_len");
  return TransformerLm(TransformerLmOptions(vocab_size, config_value<int64_t>(m, "d_model"),
                                            config_value<int64_t>(m, "heads"), config_value<int64_t>(m, "ffn_dim"),
                                            config_value<int64_t>(m, "layers"))
                           .max_positions(std::max<int64_t>(1024, seq_len))
                           .learned_positions(config_value<bool>(m, "learned_positions"))
                           .dropout(config_value<double>(m, "dropout"))
                           .attention_dropout(config_value<double>(m, "attention_dropout"))
                           .layer_drop(config_value<double>(m, "layer_drop"))
                           .share_every(config_value<int64_t>(m, "share_every"))
                           .adaptive_input(adaptive_input)
                           .adaptive_softmax(adaptive_softmax)
                           .cutoffs(cutoffs)
                           .adaptive_factor(config_value<double>(m, "adaptive_factor")));
}

std::vector<std::string> language_model_recomputed_buffers() { return {"sinusoids"}; }

EncoderClassifier make_pair_classifier(const nlohmann::json& config, int64_t vocab_size, int64_t n_labels) {
  const auto& m = config.at("model");
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
                               .pooling(config_value<std::string>(m, "pooling")));
}

std::shared_ptr<torch::nn::Module> make_image_model(const nlohmann::json& config, int64_t n_classes) {
  const auto& model = config.at("model");
  const auto arch = config_value<std::string>(model, "arch");
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
