#include "cli/torchscript_tasks.h"

#include <ATen/ATen.h>

#include <cmath>
#include <memory>

#include "cli/torchscript_model.h"
#include "qnoise/error.h"
#include "qnoise/image_dataset.h"
#include "qnoise/text_corpus.h"
#include "qnoise/vocabulary.h"

namespace qnoise::cli {

namespace {

ImageDataset images(const TorchscriptTask& task, const std::string& split) {
  return load_fashion_mnist(task.data.empty() ? kFashionMnistDirectory : task.data, split);
}

std::shared_ptr<const TextCorpus> text(const TorchscriptTask& task) {
  QNOISE_CHECK(!task.data.empty(), "--task lm needs --data: a directory of wiki.{train,valid,test}.tokens");
  QNOISE_CHECK(task.seq_len > 0, "--seq-len must be positive, got ", task.seq_len);
  if (task.vocabulary.empty()) return std::make_shared<TextCorpus>(load_wikitext(task.data));
  return std::make_shared<TextCorpus>(load_wikitext(task.data, Vocabulary::load(task.vocabulary)));
}

// Logits [B, T, V] of the module for ids [B, T], checked against the vocabulary.
at::Tensor lm_logits(torch::jit::Module& module, const at::Tensor& ids, int64_t vocabulary_size) {
  const c10::IValue output = module.forward({ids});
  QNOISE_CHECK(output.isTensor(), "the TorchScript LM returns ", output.tagKind(), ", not a tensor of logits");
  const at::Tensor logits = output.toTensor();
  QNOISE_CHECK(logits.dim() == 3 && logits.size(0) == ids.size(0) && logits.size(1) == ids.size(1) &&
                   logits.size(2) == vocabulary_size,
               "the TorchScript LM returns ", logits.sizes(), " for ids ", ids.sizes(), "; expected [", ids.size(0),
               ", ", ids.size(1), ", ", vocabulary_size, "] (the vocabulary has ", vocabulary_size, " tokens)");
  return logits;
}

nlohmann::json lm_metrics(torch::jit::Module& module, const at::Tensor& stream, int64_t vocabulary_size,
                          int64_t seq_len) {
  at::NoGradGuard no_grad;
  const LmBatcher batcher(stream, 16, seq_len);
  double total = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < batcher.size(); ++i) {
    const LmBatch batch = batcher.batch(i);
    const at::Tensor logits = lm_logits(module, batch.input, vocabulary_size);
    total += at::cross_entropy_loss(logits.flatten(0, 1), batch.target.flatten(), {}, at::Reduction::Sum)
                 .item<double>();
    count += batch.target.numel();
  }
  QNOISE_CHECK(count > 0, "the split holds too few tokens for one window of ", seq_len);
  const double loss = total / static_cast<double>(count);
  return {{"loss", loss}, {"perplexity", std::exp(loss)}, {"tokens", count}};
}

}  // namespace

TrainingLoss training_loss(const TorchscriptTask& task) {
  if (task.kind == "image") {
    auto train = std::make_shared<ImageDataset>(images(task, "train"));
    return [train](torch::jit::Module& module, at::Generator& generator) {
      const at::Tensor index = at::randint(train->images.size(0), {64}, generator, at::kLong);
      const at::Tensor batch = train->images.index_select(0, index);
      const c10::IValue output = module.forward({batch});
      QNOISE_CHECK(output.isTensor() && output.toTensor().dim() == 2 && output.toTensor().size(1) == 10,
                   "an image model of Fashion-MNIST must return [batch, 10] logits");
      return at::cross_entropy_loss(output.toTensor(), train->labels.index_select(0, index));
    };
  }
  QNOISE_CHECK(task.kind == "lm", "--task: image or lm, not '", task.kind, "'");
  auto corpus = text(task);
  const int64_t seq_len = task.seq_len;
  QNOISE_CHECK(corpus->train.size(0) > seq_len + 1, "the training split holds fewer than ", seq_len + 2, " tokens");
  return [corpus, seq_len](torch::jit::Module& module, at::Generator& generator) {
    const at::Tensor starts = at::randint(corpus->train.size(0) - seq_len - 1, {16}, generator, at::kLong);
    const at::Tensor offsets = at::arange(seq_len + 1, at::kLong);
    const at::Tensor windows = corpus->train.index_select(0, (starts.unsqueeze(1) + offsets).flatten()).view({16, -1});
    const at::Tensor input = windows.slice(1, 0, seq_len), target = windows.slice(1, 1);
    const at::Tensor logits = lm_logits(module, input, corpus->vocabulary.size());
    return at::cross_entropy_loss(logits.flatten(0, 1), target.flatten());
  };
}

nlohmann::json evaluate_torchscript(torch::jit::Module& module, const TorchscriptTask& task) {
  if (task.kind == "image") {
    const ImageDataset test = images(task, "test");
    const at::Tensor predicted = classify_images(module, test.images).argmax(1);
    const int64_t correct = predicted.eq(test.labels).sum().item<int64_t>();
    return {{"test", {{"accuracy", static_cast<double>(correct) / test.labels.size(0)},
                      {"examples", test.labels.size(0)}}}};
  }
  QNOISE_CHECK(task.kind == "lm", "--task: image or lm, not '", task.kind, "'");
  const auto corpus = text(task);
  const int64_t size = corpus->vocabulary.size();
  return {{"valid", lm_metrics(module, corpus->valid, size, task.seq_len)},
          {"test", lm_metrics(module, corpus->test, size, task.seq_len)}};
}

}  // namespace qnoise::cli
