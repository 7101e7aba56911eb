#include "qnoise/prediction.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "qnoise/error.h"
#include "qnoise/image_dataset.h"
#include "qnoise/image_input.h"
#include "qnoise/task_model.h"
#include "train/task_models.h"

namespace qnoise {

std::vector<std::string> class_names(const InferenceModel& model) {
  const std::string kind = model.kind();
  QNOISE_CHECK(kind == "image" || kind == "pairs", "this is a model of task '", kind,
               "', not a classifier (image or pairs)");
  return artifact_names(model.artifacts, kind == "image" ? "class_names" : "label_names");
}

at::Tensor prepare_images(const InferenceModel& model, const at::Tensor& raw_images) {
  QNOISE_CHECK(model.kind() == "image", "this is a model of task '", model.kind(), "', not an image classifier");
  QNOISE_CHECK(raw_images.dim() == 3 && raw_images.size(0) > 0, "images must be uint8 [n, rows, cols], got ",
               raw_images.sizes());
  const at::Tensor sized = resize_images(raw_images, kImageTaskInputSize, kImageTaskInputSize);
  // The training data's own normalisation code, with the training set's statistics.
  const at::Tensor no_labels = at::zeros({sized.size(0)}, at::kLong);
  return make_image_dataset(sized, no_labels, artifact_normalization(model.artifacts)).images;
}

at::Tensor predict_images(const InferenceModel& model, const at::Tensor& raw_images, int64_t batch_size) {
  QNOISE_CHECK(batch_size > 0, "batch size must be positive");
  const at::Tensor images = prepare_images(model, raw_images);
  torch::NoGradGuard no_grad;
  model.module->eval();
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += batch_size)
    parts.push_back(at::softmax(model.image_logits(images.slice(0, start, start + batch_size)), 1));
  return at::cat(parts, 0);
}

at::Tensor predict_pairs(const InferenceModel& model, const std::vector<SentencePair>& pairs, int64_t batch_size) {
  QNOISE_CHECK(batch_size > 0, "batch size must be positive");
  QNOISE_CHECK(!pairs.empty(), "no sentence pairs to classify");
  EncoderClassifierImpl& classifier = model.pair_classifier();
  const Vocabulary vocabulary = artifact_vocabulary(model.artifacts);
  const PairEncoding encoding = detail::pair_encoding(model.task, vocabulary);
  torch::NoGradGuard no_grad;
  classifier.eval();
  std::vector<at::Tensor> parts;
  for (size_t start = 0; start < pairs.size(); start += static_cast<size_t>(batch_size)) {
    std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> encoded;
    for (size_t i = start; i < std::min(pairs.size(), start + static_cast<size_t>(batch_size)); ++i)
      encoded.emplace_back(detail::encode_sentence(vocabulary, pairs[i].premise),
                           detail::encode_sentence(vocabulary, pairs[i].hypothesis));
    const PairBatch batch = encode_pairs(encoded, encoding);
    parts.push_back(at::softmax(classifier.forward(batch.tokens, batch.segments), 1));
  }
  return at::cat(parts, 0);
}

}  // namespace qnoise
