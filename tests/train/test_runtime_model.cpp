// Compressed models run from their stored weights (runtime_model.h) compute what the same models
// decoded to float compute, and never hold the float weights of the layers they run.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "qnoise/compression_pipeline.h"
#include "qnoise/layer_factory.h"
#include "qnoise/layer_kernel.h"
#include "qnoise/runtime_task.h"
#include "qnoise/trainer.h"

namespace {

namespace fs = std::filesystem;

std::string tiny_wikitext(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / (name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string line =
      "in the beginning god created the heaven and the earth . and the earth was without form , and void ; "
      "and darkness was upon the face of the deep . and the spirit of god moved upon the face of the waters .";
  for (const char* split : {"train", "valid", "test"}) {
    std::ofstream file(dir / (std::string("wiki.") + split + ".tokens"));
    for (int i = 0; i < 30; ++i) file << line << "\n";
  }
  return dir.string();
}

qnoise::CompressedModel compress_and_reload(qnoise::TrainingTask& task, const std::string& scheme,
                                            const std::string& name) {
  auto options = qnoise::default_compression_options(task, scheme);
  options.ipq.plan.finetune_steps = 2;
  options.ipq.progress.mode = qnoise::ProgressOptions::Mode::Off;
  const auto result = qnoise::compress_task_model(task, options);
  const auto path = ::testing::TempDir() + name + "_" + std::to_string(::getpid()) + ".qnz";
  qnoise::write_qnz(path, result.model);
  return qnoise::read_qnz(path);
}

// Every kernel layer's float weight is a one-value placeholder, and every other layer holds its
// values (the architecture was built without weights: nothing may be left a placeholder); returns
// how many kernel layers there are.
int64_t check_placeholders(qnoise::TrainingTask& task) {
  int64_t kernel_layers = 0;
  for (const auto& item : task.model().named_modules("", /*include_self=*/false)) {
    if (qnoise::layer_kernel(*item.value()) == nullptr) {
      for (const auto& parameter : item.value()->named_parameters(/*recurse=*/false))
        EXPECT_FALSE(qnoise::is_weight_placeholder(parameter.value())) << item.key() << "." << parameter.key();
      continue;
    }
    ++kernel_layers;
    const auto weight = item.value()->named_parameters(/*recurse=*/false)["weight"];
    EXPECT_EQ(weight.storage().nbytes(), 4u) << item.key();
  }
  return kernel_layers;
}

void expect_same_metrics(const qnoise::SplitMetrics& runtime, const qnoise::SplitMetrics& decoded,
                         const std::string& what) {
  EXPECT_NEAR(runtime.at("loss"), decoded.at("loss"), 1e-5 * std::abs(decoded.at("loss"))) << what;
  if (decoded.count("accuracy")) EXPECT_EQ(runtime.at("accuracy"), decoded.at("accuracy")) << what;
}

}  // namespace

TEST(RuntimeModel, LanguageModelsMatchTheDecodedModelForEveryScheme) {
  const auto dir = tiny_wikitext("runtime_lm");
  for (const bool adaptive : {false, true}) {
    for (const std::string scheme : {"ipq", "int8", "int4"}) {
      const std::string what = scheme + (adaptive ? " adaptive" : " tied");
      torch::manual_seed(3);
      nlohmann::json model_config = {{"d_model", 64}, {"heads", 2}, {"ffn_dim", 64}, {"layers", 2}};  // bands 64, 16, 4
      if (adaptive) model_config.update({{"adaptive_input", true}, {"adaptive_softmax", true}, {"cutoffs", {8, 16}}});
      else model_config["learned_positions"] = true;  // compressed too, looked up by row
      auto task = qnoise::make_training_task(
          {{"task", "lm"}, {"data", dir}, {"batch_size", 4}, {"seq_len", 16}, {"model", model_config}});
      const auto model = compress_and_reload(*task, scheme, "runtime_lm");
      const auto decoded = qnoise::load_compressed_task(model)->evaluate("test");
      const qnoise::RuntimeTask runtime = qnoise::load_runtime_task(model);
      EXPECT_GT(check_placeholders(*runtime.task), 8) << what;  // FFN, attention, embeddings
      const int64_t loaded_bytes = runtime.layers->resident_bytes();
      EXPECT_GT(loaded_bytes, 0);
      expect_same_metrics(runtime.task->evaluate("test"), decoded, what);
      // The embeddings' packed form serves the lookups and the tied output layers: nothing is
      // packed on first use.
      EXPECT_EQ(runtime.layers->resident_bytes(), loaded_bytes) << what;
    }
  }
}

TEST(RuntimeModel, EfficientNetWithFourBitCentroidsMatchesTheDecodedModel) {
  torch::manual_seed(4);
  auto task = qnoise::make_training_task(
      {{"task", "image"}, {"train_limit", 64}, {"batch_size", 32}, {"valid_size", 200},
       {"model", {{"arch", "efficientnet"}, {"width_multiplier", 0.25}, {"depth_multiplier", 0.25}}}});
  for (const std::string scheme : {"ipq", "int8"}) {
    const auto model = compress_and_reload(*task, scheme, "runtime_effnet");
    const auto decoded = qnoise::load_compressed_task(model)->evaluate("valid");
    const qnoise::RuntimeTask runtime = qnoise::load_runtime_task(model);
    // Every compressed layer runs from the file: 1x1 convolutions and the classifier through packed
    // kernels, the stem and depthwise convolutions decoded on each call.
    int64_t compressed_layers = 0;
    for (const auto& [name, weight] : model.tensors)
      compressed_layers += weight.scheme != qnoise::WeightScheme::Float32 && weight.scheme != qnoise::WeightScheme::Float16;
    EXPECT_EQ(check_placeholders(*runtime.task), compressed_layers) << scheme;
    EXPECT_GT(compressed_layers, 5) << scheme;
    expect_same_metrics(runtime.task->evaluate("valid"), decoded, scheme);
  }
}

TEST(RuntimeModel, KernelsLiveAndDieWithTheirLayers) {
  const auto dir = tiny_wikitext("runtime_detach");
  torch::manual_seed(5);
  auto task = qnoise::make_training_task({{"task", "lm"}, {"data", dir}, {"batch_size", 4}, {"seq_len", 16},
                                          {"model", {{"d_model", 16}, {"heads", 2}, {"ffn_dim", 32}, {"layers", 1}}}});
  const auto model = compress_and_reload(*task, "int8", "runtime_detach");
  std::shared_ptr<torch::nn::Module> module;
  std::vector<std::string> layers;
  const size_t parameters = task->model().parameters().size();
  {
    qnoise::RuntimeTask runtime = qnoise::load_runtime_task(model);
    module = runtime.task->model_ptr();
    layers = runtime.layers->layers();
    EXPECT_GT(check_placeholders(*runtime.task), 0);
  }
  // The module owns its kernels (a child "packed" without parameters): they outlive the runtime.
  ASSERT_FALSE(layers.empty());
  EXPECT_EQ(module->parameters().size(), parameters);
  for (const auto& item : module->named_modules("", /*include_self=*/false)) {
    const bool packed = std::find(layers.begin(), layers.end(), item.key()) != layers.end();
    EXPECT_EQ(qnoise::layer_kernel(*item.value()) != nullptr, packed) << item.key();
    if (!packed) continue;
    qnoise::set_layer_kernel(*item.value(), nullptr);  // detached: the layer is a plain module again
    EXPECT_EQ(qnoise::layer_kernel(*item.value()), nullptr) << item.key();
    EXPECT_FALSE(item.value()->named_children().contains(qnoise::kPackedLayerChild)) << item.key();
  }
}
