// Models rebuilt from their .qnz file alone (no data set): the same numbers as the task rebuilt
// with its data, the two-step build/load a runtime can step into, and clear errors for files
// that do not describe a usable model.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "train/small_qnz_models.h"
#include "qnoise/compression_pipeline.h"
#include "qnoise/efficientnet.h"
#include "qnoise/error.h"
#include "qnoise/idx_file.h"
#include "qnoise/image_dataset.h"
#include "qnoise/inference_model.h"
#include "qnoise/prediction.h"
#include "qnoise/sentence_pairs.h"
#include "qnoise/task_model.h"
#include "qnoise/text_corpus.h"
#include "qnoise/text_generation.h"

namespace {

namespace fs = std::filesystem;
using qnoise::testing::unique_temp_path;

// Inputs covering every position the tiny LM was trained on.
at::Tensor some_tokens(int64_t vocab) {
  return torch::arange(2 * 16, torch::kLong).remainder(vocab - 3).add(3).view({2, 16});
}

}  // namespace

TEST(InferenceModel, LanguageModelFromTheFileAloneGivesTheTaskModelsLogProbs) {
  const auto data = qnoise::testing::write_tiny_wikitext("infer_lm_data");
  const auto qnz = unique_temp_path("infer_lm.qnz");
  qnoise::testing::write_tiny_lm_qnz(data, qnz);
  const auto file = qnoise::read_qnz(qnz);
  at::Tensor expected, expected_next;
  {
    auto task = qnoise::load_compressed_task(file);
    auto& lm = dynamic_cast<qnoise::TransformerLmImpl&>(task->model());
    torch::NoGradGuard no_grad;
    const auto tokens = some_tokens(lm.options.vocab_size());
    expected = lm.output_log_probs(lm.forward(tokens));
    expected_next = lm.log_probs(tokens);
  }
  fs::remove_all(data);  // from here on, only the file

  const auto model = qnoise::load_inference_model(qnoise::read_qnz(qnz));
  EXPECT_EQ(model.kind(), "lm");
  EXPECT_FALSE(model.module->is_training());
  auto& lm = model.language_model();
  torch::NoGradGuard no_grad;
  const auto tokens = some_tokens(lm.options.vocab_size());
  EXPECT_TRUE(torch::equal(lm.output_log_probs(lm.forward(tokens)), expected));
  EXPECT_TRUE(torch::equal(lm.log_probs(tokens), expected_next));
  EXPECT_THROW(model.pair_classifier(), qnoise::Error);
  EXPECT_THROW(qnoise::class_names(model), qnoise::Error);
  fs::remove(qnz);
}

TEST(InferenceModel, AdaptiveInputAndSoftmaxLanguageModelLoadsFromTheFileAlone) {
  const auto data = qnoise::testing::write_tiny_wikitext("infer_adaptive_data");
  auto config = qnoise::testing::tiny_lm_config(data);
  config["model"].update({{"adaptive_input", true}, {"adaptive_softmax", true}, {"cutoffs", {5, 9}}});
  torch::manual_seed(3);
  auto task = qnoise::make_training_task(config);
  qnoise::testing::train_a_few_steps(*task, 5, 1e-2);
  const auto qnz = unique_temp_path("infer_adaptive.qnz");
  qnoise::write_qnz(qnz, qnoise::compress_task_model(*task, qnoise::parse_compression_scheme("int8")).model);
  auto& trained = dynamic_cast<qnoise::TransformerLmImpl&>(task->model());
  torch::NoGradGuard no_grad;
  const auto tokens = some_tokens(trained.options.vocab_size());
  const auto expected = trained.log_probs(tokens);
  fs::remove_all(data);

  const auto model = qnoise::load_inference_model(qnoise::read_qnz(qnz));
  ASSERT_TRUE(model.language_model().adaptive_softmax);
  EXPECT_TRUE(torch::equal(model.language_model().log_probs(tokens), expected));
  fs::remove(qnz);
}

TEST(InferenceModel, GreedyGenerationFollowsTheArgmaxAndASeedRepeatsSampling) {
  const auto qnz = qnoise::testing::tiny_lm_file_without_data();
  const auto model = qnoise::load_inference_model(qnoise::read_qnz(qnz));
  auto& lm = model.language_model();
  const auto vocabulary = qnoise::artifact_vocabulary(model.artifacts);
  const auto context = qnoise::encode_prompt("in the", vocabulary);
  const int64_t seq_len = model.task.at("seq_len");

  const auto greedy = qnoise::generate_tokens(lm, context, 20, seq_len, {0.0, 0}, 7);
  // Within the window the cached generation sees what the whole-context model sees (past it, the
  // cache restarts from the last half of the window, where a sliding window would differ).
  auto running = context;
  for (int64_t token : greedy) {
    if (static_cast<int64_t>(running.size()) >= seq_len) break;
    EXPECT_EQ(token, qnoise::next_token_log_probs(lm, running, seq_len).argmax().item<int64_t>());
    running.push_back(token);
  }
  EXPECT_EQ(static_cast<int64_t>(running.size()), seq_len);
  // The trained verse, continued past the 16-token window.
  EXPECT_EQ(qnoise::decode_tokens(greedy, vocabulary, /*at_line_start=*/false).substr(0, 27), " beginning god created the ");

  const auto a = qnoise::generate_tokens(lm, context, 30, seq_len, {1.5, 0}, 11);
  EXPECT_EQ(qnoise::generate_tokens(lm, context, 30, seq_len, {1.5, 0}, 11), a);
  EXPECT_NE(qnoise::generate_tokens(lm, context, 30, seq_len, {1.5, 0}, 12), a);
}

TEST(InferenceModel, BuildThenLoadLeavesSkippedTensorsToTheRuntime) {
  const auto qnz = qnoise::testing::tiny_lm_file_without_data();
  const auto file = qnoise::read_qnz(qnz);
  auto model = qnoise::build_inference_model(file);
  EXPECT_EQ(model.recomputed_buffers, std::vector<std::string>{"sinusoids"});
  auto parameters = model.module->named_parameters();
  const at::Tensor before = parameters["decoder.layers.0.fc1.weight"].clone();
  qnoise::load_compressed_tensors(model, file, {"decoder.layers.0.fc1.weight"});
  EXPECT_TRUE(torch::equal(parameters["decoder.layers.0.fc1.weight"], before));  // left alone
  EXPECT_TRUE(torch::equal(parameters["decoder.layers.0.fc2.weight"], file.find("decoder.layers.0.fc2.weight")->decode()));
  EXPECT_THROW(qnoise::load_compressed_tensors(model, file, {"no.such.weight"}), qnoise::Error);
}

TEST(InferenceModel, ImageClassifierPredictsFromRawPixelsLikeTheTask) {
  const auto qnz = unique_temp_path("infer_cnn.qnz");
  auto task = qnoise::testing::write_small_cnn_qnz(qnz);
  const auto test = qnoise::load_fashion_mnist(qnoise::kFashionMnistDirectory, "test");
  const auto raw = qnoise::read_idx_images(std::string(qnoise::kFashionMnistDirectory) + "/t10k-images-idx3-ubyte.gz")
                       .slice(0, 0, 50);
  at::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    expected = torch::softmax(qnoise::image_classifier_forward(task->model(), test.images.slice(0, 0, 50)), 1);
  }
  const auto model = qnoise::load_inference_model(qnoise::read_qnz(qnz));
  EXPECT_TRUE(torch::equal(qnoise::prepare_images(model, raw), test.images.slice(0, 0, 50)));
  const auto probabilities = qnoise::predict_images(model, raw, 16);
  EXPECT_TRUE(torch::allclose(probabilities, expected, 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(probabilities.argmax(1), expected.argmax(1)));
  EXPECT_EQ(qnoise::class_names(model), qnoise::fashion_mnist_class_names());
  EXPECT_THROW(model.language_model(), qnoise::Error);
  fs::remove(qnz);
}

TEST(InferenceModel, PairClassifierEncodesRawTextAsTheTaskDid) {
  const auto data = qnoise::testing::write_tiny_pairs("infer_pairs_data");
  const auto qnz = unique_temp_path("infer_pairs.qnz");
  auto task = qnoise::testing::write_tiny_pairs_qnz(data, qnz);
  const auto valid = qnoise::read_sentence_pairs(data + "/valid.tsv");
  const double task_accuracy = task->evaluate("valid").at("accuracy");
  // The task's own module behind the same prediction code, for the probabilities to compare.
  const qnoise::InferenceModel in_memory{task->config(), task->artifacts(), task->model_ptr(), {}};
  const auto expected = qnoise::predict_pairs(in_memory, valid.pairs);
  fs::remove_all(data);

  const auto model = qnoise::load_inference_model(qnoise::read_qnz(qnz));
  EXPECT_EQ(qnoise::class_names(model), (std::vector<std::string>{"0", "1"}));
  const auto probabilities = qnoise::predict_pairs(model, valid.pairs, 7);
  ASSERT_EQ(probabilities.sizes(), (std::vector<int64_t>{96, 2}));
  EXPECT_TRUE(torch::allclose(probabilities, expected, 1e-5, 1e-6));
  // Raw text tokenised here as the task tokenised its data: the same accuracy as its evaluation.
  const auto labels = torch::arange(96, torch::kLong).remainder(2);  // as write_tiny_pairs labels them
  const double accuracy = probabilities.argmax(1).eq(labels).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(accuracy, task_accuracy, 1.5 / 96);
  fs::remove(qnz);
}

TEST(InferenceModel, FilesWithoutAKindOrWithBadArtifactsAreClearErrors) {
  const auto qnz = unique_temp_path("infer_bad.qnz");
  qnoise::testing::write_small_cnn_qnz(qnz);
  const auto good = qnoise::read_qnz(qnz);
  auto expect_error = [](const qnoise::CompressedModel& file, const std::string& part) {
    try {
      qnoise::load_inference_model(file);
      ADD_FAILURE() << "no error, expected one naming " << part;
    } catch (const qnoise::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  auto no_kind = good;
  no_kind.task.erase("task");
  expect_error(no_kind, "no task kind");
  auto unknown_kind = good;
  unknown_kind.task["task"] = "speech";
  expect_error(unknown_kind, "unknown task 'speech'");
  auto no_names = good;
  no_names.artifacts.erase("class_names");
  expect_error(no_names, "class_names");
  auto no_normalization = good;
  no_normalization.artifacts.erase("normalization");
  expect_error(no_normalization, "normalization");
  auto more_classes = good;  // 11 names: the classifier would have 11 outputs, the file has 10
  more_classes.artifacts["class_names"].push_back("Hat");
  expect_error(more_classes, "classifier.weight");

  const auto lm_qnz = qnoise::testing::tiny_lm_file_without_data();
  auto lm = qnoise::read_qnz(lm_qnz);
  auto bad_vocabulary = lm;
  bad_vocabulary.artifacts["vocabulary"] = "hello 3\n";
  expect_error(bad_vocabulary, "special token");
  auto other_vocabulary = lm;  // one more token: the embedding's shape no longer matches
  other_vocabulary.artifacts["vocabulary"] = lm.artifacts["vocabulary"].get<std::string>() + "extra 1\n";
  expect_error(other_vocabulary, "embed.weight");
  fs::remove(qnz);
}
