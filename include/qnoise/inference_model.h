#pragma once
// A model rebuilt from its .qnz file alone, for inference: the architecture from the file's task
// configuration, its sizes (vocabulary, classes) and preprocessing (vocabulary, normalization)
// from the file's artifacts, its weights decoded from the file. No data set is read.
//
// Two steps, so that a runtime can put itself between them:
//
//   CompressedModel file = read_qnz(path);
//   InferenceModel model = build_inference_model(file);      // architecture only, untrained
//   // ... attach compressed-weight kernels to some layers (layer_kernel.h) ...
//   load_compressed_tensors(model, file, /*skip=*/names_the_kernels_hold);
//   model.module->eval();
//
// load_inference_model(file) does all of it with every tensor decoded (no kernels), in eval mode.
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "qnoise/encoder_classifier.h"
#include "qnoise/qnz_file.h"
#include "qnoise/transformer_lm.h"

namespace qnoise {

struct InferenceModel {
  nlohmann::json task;       // the complete task configuration (its "data" is never read)
  nlohmann::json artifacts;  // vocabulary, class or label names, image normalization
  std::shared_ptr<torch::nn::Module> module;
  std::vector<std::string> recomputed_buffers;  // rebuilt by the model, not stored in the file

  // "image", "lm" or "pairs".
  std::string kind() const;
  // The module as its class; each throws qnoise::Error naming the model's kind for another one.
  TransformerLmImpl& language_model() const;
  EncoderClassifierImpl& pair_classifier() const;
  // Image classifiers: logits [n, classes] of normalised images [n, 1, 28, 28].
  at::Tensor image_logits(const at::Tensor& images) const;
};

// The architecture the file describes, freshly initialised (not yet its weights), in training
// mode. Throws qnoise::Error when the file's task kind is missing or unknown, or its artifacts
// are missing or malformed (e.g. a vocabulary without its special tokens).
InferenceModel build_inference_model(const CompressedModel& file);

// Decodes the file's tensors into the model, but those named in `skip` (see
// model_compression.h's load_compressed_tensors). Throws qnoise::Error when the file does not
// fit the architecture (a missing or extra tensor, a shape that differs from what the
// configuration and artifacts give).
void load_compressed_tensors(InferenceModel& model, const CompressedModel& file,
                             const std::set<std::string>& skip = {});

// build_inference_model, every tensor decoded, eval mode.
InferenceModel load_inference_model(const CompressedModel& file);

}  // namespace qnoise
