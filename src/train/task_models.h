#pragma once
// The model of each task kind, built from its configuration and the sizes its data gives
// (vocabulary, classes). The training tasks call these with the sizes of the data they loaded;
// make_task_model (qnoise/task_model.h) calls them with the sizes stored in the artifacts, so a
// model rebuilt from a file has exactly the architecture it was trained with.
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qnoise/encoder_classifier.h"
#include "qnoise/transformer_lm.h"
#include "qnoise/vocabulary.h"

namespace qnoise::detail {

// `config` is a complete task configuration (complete_task_config) of the kind each names.
TransformerLm make_language_model(const nlohmann::json& config, int64_t vocab_size);
EncoderClassifier make_pair_classifier(const nlohmann::json& config, int64_t vocab_size, int64_t n_labels);
// EfficientNet or the small CNN (config.model.arch).
std::shared_ptr<torch::nn::Module> make_image_model(const nlohmann::json& config, int64_t n_classes);

// Buffers the language model rebuilds from its configuration: the sinusoidal positions.
std::vector<std::string> language_model_recomputed_buffers();

// The pairs task's <cls> token (RoBERTa's <s>); </s> separates the sentences.
inline constexpr const char* kPairClassToken = "<s>";
// How the pairs task lays out an encoded pair (ids of <s>, </s>, <pad>; max_length).
PairEncoding pair_encoding(const nlohmann::json& config, const Vocabulary& vocabulary);
// One sentence of a pair as the pairs task encodes it: words and punctuation split (tokenize_kjv),
// unknown tokens as <unk>.
std::vector<int64_t> encode_sentence(const Vocabulary& vocabulary, const std::string& text);

}  // namespace qnoise::detail
