#pragma once
// Class probabilities of a classifier rebuilt from its .qnz file (inference_model.h), on raw
// inputs prepared exactly as its training data was: images resized to the training size and
// normalised with the stored statistics; sentence pairs tokenised with the stored vocabulary and
// laid out as the pairs task lays them out.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "qnoise/inference_model.h"
#include "qnoise/sentence_pairs.h"

namespace qnoise {

// The model's class names by class id: "class_names" (image) or "label_names" (pairs). Throws
// qnoise::Error for a language model.
std::vector<std::string> class_names(const InferenceModel& model);

// Normalised model inputs float [n, 1, 28, 28] from uint8 images [n, rows, cols] of any size.
at::Tensor prepare_images(const InferenceModel& model, const at::Tensor& raw_images);

// Probabilities float [n, classes] of uint8 images [n, rows, cols], `batch_size` at a time.
at::Tensor predict_images(const InferenceModel& model, const at::Tensor& raw_images, int64_t batch_size = 256);

// Probabilities float [n, labels] of sentence pairs (their labels are not read).
at::Tensor predict_pairs(const InferenceModel& model, const std::vector<SentencePair>& pairs, int64_t batch_size = 64);

}  // namespace qnoise
