#pragma once
// What the qnoise program trains and evaluates a TorchScript model on: Fashion-MNIST classification
// (inputs [N, 1, 28, 28], normalized with the training set's statistics; outputs [N, 10] logits) or
// language modelling on WikiText-format text (inputs [B, T] token ids; outputs [B, T, V] logits,
// V the vocabulary's size: a vocabulary file in qnoise's format, or the one built from the training
// split as `qnoise train` builds it).
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/jit/api/module.h>

#include <cstdint>
#include <functional>
#include <string>

namespace qnoise::cli {

struct TorchscriptTask {
  std::string kind = "image";  // "image" or "lm"
  std::string data;            // image: IDX directory (default Debian's Fashion-MNIST); lm: required
  std::string vocabulary;      // lm: "token count" lines in id order (Vocabulary::save); default: built
  int64_t seq_len = 64;        // lm: tokens per window
};

// The loss of the module on one random training batch (64 images, or 16 windows of text).
using TrainingLoss = std::function<at::Tensor(torch::jit::Module& module, at::Generator& generator)>;
// Throws qnoise::Error for an unknown kind or data it cannot read.
TrainingLoss training_loss(const TorchscriptTask& task);

// image: {"test": {"accuracy", "examples"}}; lm: {"valid": {"loss", "perplexity"}, "test": {...}}.
// Throws qnoise::Error when the module's outputs do not fit the task.
nlohmann::json evaluate_torchscript(torch::jit::Module& module, const TorchscriptTask& task);

}  // namespace qnoise::cli
