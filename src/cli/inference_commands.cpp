// `qnoise generate` and `qnoise predict`: run a compressed model from its .qnz file alone (no data
// set): sample text from a language model, or classify images and sentence pairs.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>

#include "cli/command.h"
#include "cli/torchscript_model.h"
#include "qnoise/runtime_task.h"
#include "qnoise/error.h"
#include "qnoise/idx_file.h"
#include "qnoise/image_dataset.h"
#include "qnoise/image_input.h"
#include "qnoise/inference_model.h"
#include "qnoise/prediction.h"
#include "qnoise/task_model.h"
#include "qnoise/text_corpus.h"
#include "qnoise/text_generation.h"

namespace qnoise::cli {

namespace {

// The file's task kind, read before building anything, so the wrong command is named first.
std::string task_kind(const CompressedModel& file, const std::string& path) {
  QNOISE_CHECK(file.task.is_object() && file.task.contains("task") && file.task.at("task").is_string(), "'", path,
               "' has no task kind in its metadata");
  return file.task.at("task").get<std::string>();
}

void set_threads(int threads) {
  if (threads > 0) at::set_num_threads(threads);
}

struct GenerateCommandOptions {
  std::string file, prompt;
  int64_t tokens = 50, top_k = 0;
  double temperature = 1.0;
  uint64_t seed = 0;
  CLI::Option* seed_option = nullptr;  // given or not
  int threads = 0;  // 0: the program's --threads
  bool decoded = false;
};

// Kernels on the compressed weights, or every weight decoded to float (--decoded).
RuntimeInferenceModel load_for_inference(const CompressedModel& file, bool decoded, const RuntimeOptions& options) {
  if (decoded) return RuntimeInferenceModel{load_inference_model(file), nullptr};
  return load_runtime_inference_model(file, options);
}

void run_generate(const GenerateCommandOptions& command, const RuntimeOptions& options) {
  QNOISE_CHECK(command.tokens >= 0, "--tokens must be >= 0, got ", command.tokens);
  QNOISE_CHECK(command.temperature >= 0, "--temperature must be >= 0 (0: greedy), got ", command.temperature);
  QNOISE_CHECK(command.top_k >= 0, "--top-k must be >= 0 (0: all tokens), got ", command.top_k);
  set_threads(command.threads);
  RuntimeInferenceModel runtime = [&] {
    const CompressedModel file = read_qnz(command.file);
    const std::string kind = task_kind(file, command.file);
    QNOISE_CHECK(kind == "lm", "generate needs a language model; '", command.file, "' holds a model of task '", kind,
                 "' (use qnoise predict)");
    return load_for_inference(file, command.decoded, options);
  }();  // the file's contents are freed here: the model holds what it needs
  InferenceModel& model = runtime.model;
  const Vocabulary vocabulary = artifact_vocabulary(model.artifacts);
  const std::vector<int64_t> context = encode_prompt(command.prompt, vocabulary);
  int64_t unknown = 0;
  for (int64_t id : context) unknown += id == Vocabulary::kUnknownId;
  if (unknown > 0)
    std::cerr << "qnoise generate: prompt tokens not in the model's vocabulary (read as <unk>): " << unknown << "\n";
  const uint64_t seed = command.seed_option->count() > 0 ? command.seed : std::random_device{}();
  const auto max_context = model.task.at("seq_len").get<int64_t>();  // the window it was trained on

  std::cout << command.prompt << std::flush;
  bool at_line_start = command.prompt.empty() || command.prompt.back() == '\n';
  const auto start = std::chrono::steady_clock::now();
  generate_tokens(model.language_model(), context, command.tokens, max_context,
                  {command.temperature, command.top_k}, seed, [&](int64_t token) {
                    std::cout << decode_tokens({token}, vocabulary, at_line_start) << std::flush;
                    at_line_start = token == Vocabulary::kEndOfSentenceId;
                  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!at_line_start) std::cout << "\n";
  std::cout << std::flush;
  std::ostringstream stats;
  stats << std::fixed << std::setprecision(3) << "qnoise generate: " << command.tokens << " tokens in " << seconds
        << " s (" << std::setprecision(1) << (seconds > 0 ? command.tokens / seconds : 0.0) << " tokens/s, "
        << at::get_num_threads() << " threads), seed " << seed << "\n";
  std::cerr << stats.str();
}

// Fashion-MNIST's training-set pixel statistics in [0, 1] units: how TorchScript models of it are
// fed by default (examples/python normalizes with them too).
constexpr double kFashionMnistMean = 0.2860, kFashionMnistStd = 0.3530;

struct PredictCommandOptions {
  std::string file, input, labels;
  int64_t top = 1;
  int threads = 0;
  bool decoded = false;
  bool torchscript = false;
  double mean = kFashionMnistMean, std = kFashionMnistStd;
};

// One line per input: index, then the `top` most probable classes and their probabilities.
// Returns the predicted class of each input.
std::vector<int64_t> print_predictions(const at::Tensor& probabilities, const std::vector<std::string>& names,
                                       int64_t top) {
  QNOISE_CHECK(probabilities.size(1) == static_cast<int64_t>(names.size()), "the model has ",
               probabilities.size(1), " outputs but ", names.size(), " class names");
  const auto k = std::min<int64_t>(top, probabilities.size(1));
  const auto best = probabilities.to(at::kFloat).topk(k, 1);
  const at::Tensor values_tensor = std::get<0>(best).contiguous(), indices_tensor = std::get<1>(best).contiguous();
  const auto values = values_tensor.accessor<float, 2>();
  const auto indices = indices_tensor.accessor<int64_t, 2>();
  std::vector<int64_t> predicted;
  std::ostringstream out;
  out << std::fixed << std::setprecision(4);
  for (int64_t i = 0; i < probabilities.size(0); ++i) {
    out << i;
    for (int64_t j = 0; j < k; ++j) out << '\t' << names[indices[i][j]] << '\t' << values[i][j];
    out << '\n';
    predicted.push_back(indices[i][0]);
  }
  std::cout << out.str();
  return predicted;
}

void print_accuracy(const std::vector<int64_t>& predicted, const std::vector<int64_t>& truth) {
  int64_t correct = 0;
  for (size_t i = 0; i < predicted.size(); ++i) correct += predicted[i] == truth[i];
  std::cout << "accuracy " << std::fixed << std::setprecision(4)
            << static_cast<double>(correct) / static_cast<double>(predicted.size()) << " (" << correct << " of "
            << predicted.size() << ")\n";
}

// The TSV's labels as the model's class ids (matched by name: "1", "entailment", ...).
std::vector<int64_t> pair_labels(const SentencePairSet& set, const std::vector<std::string>& names,
                                 const std::string& path) {
  std::vector<int64_t> truth;
  for (const auto& pair : set.pairs) {
    const std::string& name = set.label_names[pair.label];
    const auto found = std::find(names.begin(), names.end(), name);
    QNOISE_CHECK(found != names.end(), "'", path, "' has label '", name, "', which the model does not know");
    truth.push_back(found - names.begin());
  }
  return truth;
}

std::vector<int64_t> labels_of(const std::string& path, int64_t n) {
  const at::Tensor labels = read_idx_labels(path).to(at::kLong);
  QNOISE_CHECK(labels.size(0) == n, "'", path, "' has ", labels.size(0), " labels for ", n, " images");
  return std::vector<int64_t>(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel());
}

// A TorchScript image classifier (torch.jit.save from Python): images resized to 28x28,
// normalized by --mean / --std, classes printed by index.
void run_torchscript_predict(const PredictCommandOptions& command) {
  QNOISE_CHECK(!command.decoded, "--decoded is for .qnz files; a TorchScript model runs as it was saved");
  QNOISE_CHECK(command.std > 0, "--std must be positive, got ", command.std);
  torch::jit::Module module = load_torchscript_model(command.file);
  const at::Tensor raw = resize_images(read_images(command.input), kFashionMnistSide, kFashionMnistSide);
  const at::Tensor images = (raw.to(at::kFloat).div(255.0) - command.mean).div(command.std).unsqueeze(1);
  const at::Tensor probabilities = classify_images(module, images);
  std::vector<std::string> names;
  for (int64_t c = 0; c < probabilities.size(1); ++c) names.push_back(std::to_string(c));
  const auto predicted = print_predictions(probabilities, names, command.top);
  if (!command.labels.empty()) print_accuracy(predicted, labels_of(command.labels, images.size(0)));
}

void run_predict(const PredictCommandOptions& command, const RuntimeOptions& options) {
  set_threads(command.threads);
  if (command.torchscript) return run_torchscript_predict(command);
  const RuntimeInferenceModel runtime = [&] {
    const CompressedModel file = read_qnz(command.file);
    const std::string kind = task_kind(file, command.file);
    QNOISE_CHECK(kind == "image" || kind == "pairs", "predict runs classifiers; '", command.file,
                 "' holds a model of task '", kind, "' (use qnoise generate)");
    QNOISE_CHECK(command.labels.empty() || kind == "image",
                 "--labels is for image models; a sentence-pair TSV's labels are its label column");
    return load_for_inference(file, command.decoded, options);
  }();  // the file's contents are freed here
  const InferenceModel& model = runtime.model;
  const std::string kind = model.kind();
  const std::vector<std::string> names = class_names(model);
  if (kind == "image") {
    const at::Tensor images = read_images(command.input);
    const std::vector<int64_t> labels = command.labels.empty() ? std::vector<int64_t>{}
                                                               : labels_of(command.labels, images.size(0));
    const auto predicted = print_predictions(predict_images(model, images), names, command.top);
    if (!command.labels.empty()) print_accuracy(predicted, labels);
    return;
  }
  const SentencePairSet set = read_sentence_pairs(command.input, /*labels_required=*/false);
  const auto predicted = print_predictions(predict_pairs(model, set.pairs), names, command.top);
  if (set.labelled) print_accuracy(predicted, pair_labels(set, names, command.input));
}

}  // namespace

std::vector<Command> add_inference_commands(CLI::App& parent, const RuntimeOptions& runtime) {
  auto generate = std::make_shared<GenerateCommandOptions>();
  CLI::App* g = parent.add_subcommand(
      "generate", "Sample text from a compressed language model (.qnz file alone: no data needed)");
  g->add_option("file", generate->file, "The .qnz file of a language model")->required();
  g->add_option("--prompt", generate->prompt,
                "Text to continue (default: none, start a new line); words the model does not know become <unk>");
  // Ranges are checked when the command runs, with messages that name the option.
  g->add_option("--tokens", generate->tokens, "Tokens to generate (default 50)");
  g->add_option("--temperature", generate->temperature, "Sampling temperature (default 1.0; 0: greedy)");
  g->add_flag("--decoded", generate->decoded, "Decode every weight to float first (default: run from the compressed weights)");
  g->add_option("--top-k", generate->top_k, "Sample among the K most probable tokens (default 0: all)");
  generate->seed_option = g->add_option("--seed", generate->seed,
                                        "Random seed: the same seed gives the same text (default: random, printed)");
  g->add_option("--threads", generate->threads, "Threads for tensor operations (default: all cores)")
      ->check(CLI::PositiveNumber);

  auto predict = std::make_shared<PredictCommandOptions>();
  CLI::App* p = parent.add_subcommand(
      "predict", "Classify images or sentence pairs with a compressed classifier (.qnz file alone: no data needed)");
  p->add_option("file", predict->file, "The .qnz file of an image or sentence-pair classifier (with --torchscript: "
                "a TorchScript image classifier saved from Python)")->required();
  p->add_option("input", predict->input,
                "image model: an IDX image file (all its images) or a binary PGM (P5, 8-bit, any size; resized "
                "to 28x28). PNG/JPEG are not read (no image library): convert to PGM first. "
                "pairs model: a TSV with premise/hypothesis (sentence1/sentence2) columns and optionally label")
      ->required();
  p->add_option("--labels", predict->labels, "image model: IDX label file; prints the accuracy too");
  p->add_flag("--decoded", predict->decoded, "Decode every weight to float first (default: run from the compressed weights)");
  p->add_flag("--torchscript", predict->torchscript,
              "The file is a TorchScript image classifier (torch.jit.save; its qnoise packed layers run on "
              "qnoise's kernels) taking [N, 1, 28, 28] images normalized by --mean and --std");
  p->add_option("--mean", predict->mean, "--torchscript: the mean subtracted from pixels in [0, 1] (default "
                "Fashion-MNIST's 0.2860)");
  p->add_option("--std", predict->std, "--torchscript: the standard deviation pixels are divided by (default "
                "Fashion-MNIST's 0.3530)");
  p->add_option("--top", predict->top, "Print the K most probable classes (default 1)")->check(CLI::PositiveNumber);
  p->add_option("--threads", predict->threads, "Threads for tensor operations (default: all cores)")
      ->check(CLI::PositiveNumber);
  return {{g, [generate, &runtime] { run_generate(*generate, runtime); }},
          {p, [predict, &runtime] { run_predict(*predict, runtime); }}};
}

}  // namespace qnoise::cli
