// The compression pipeline: a task's model compressed (iPQ, int8, int4) into .qnz contents, and
// the file evaluating exactly like the model right after quantization.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "qnoise/compression_pipeline.h"
#include "qnoise/error.h"
#include "qnoise/model_compression.h"
#include "qnoise/trainer.h"
#include "train/small_tasks.h"

namespace {

namespace fs = std::filesystem;
using qnoise::testing::quiet_ipq;
using qnoise::testing::small_cnn_task;

std::string temp_path(const std::string& name) { return ::testing::TempDir() + name; }

// A WikiText directory whose three splits repeat one line.
std::string tiny_wikitext(const std::string& name, const std::string& line, int lines) {
  const fs::path dir = temp_path(name);
  fs::create_directories(dir);
  for (const char* split : {"train", "valid", "test"}) {
    std::ofstream file(dir / (std::string("wiki.") + split + ".tokens"));
    for (int i = 0; i < lines; ++i) file << line << "\n";
  }
  return dir.string();
}

}  // namespace

TEST(CompressionPipeline, FileEvaluatesExactlyLikeTheModelRightAfterQuantization) {
  for (const auto scheme : {qnoise::CompressionScheme::Ipq, qnoise::CompressionScheme::Int8,
                            qnoise::CompressionScheme::Int4}) {
    auto task = small_cnn_task();
    qnoise::CompressionOptions options;
    options.scheme = scheme;
    options.ipq = quiet_ipq(qnoise::testing::small_cnn_plan(2));
    const auto result = qnoise::compress_task_model(*task, options);
    const auto in_memory = task->evaluate("valid");
    const auto path = temp_path("pipeline.qnz");
    qnoise::write_qnz(path, result.model);
    const auto reloaded = qnoise::load_compressed_task(qnoise::read_qnz(path));
    EXPECT_EQ(reloaded->evaluate("valid"), in_memory) << qnoise::to_string(scheme);
    // The file holds the compressed tensors and a header, nothing else (no float copy).
    EXPECT_LT(static_cast<double>(fs::file_size(path)), result.model.stored_bytes() + 20000.0);
    EXPECT_LT(result.model.stored_bytes(), result.model.float_bytes() / (scheme == qnoise::CompressionScheme::Int8 ? 2 : 4));
  }
}

TEST(CompressionPipeline, FoldedBatchNormComputesWhatTheStatisticsDid) {
  torch::manual_seed(2);
  auto task = qnoise::make_training_task(
      {{"task", "image"}, {"train_limit", 64}, {"batch_size", 32}, {"valid_size", 200},
       {"model", {{"arch", "efficientnet"}, {"width_multiplier", 0.25}, {"depth_multiplier", 0.25}}}});
  {
    // Statistics far from the initial 0 / 1, so folding them wrongly would show.
    torch::NoGradGuard no_grad;
    for (const auto& item : task->model().named_buffers()) {
      if (item.key().find("running_mean") != std::string::npos) item.value().uniform_(-0.5, 0.5);
      if (item.key().find("running_var") != std::string::npos) item.value().uniform_(0.2, 3.0);
    }
  }
  task->model().eval();
  const auto before = task->evaluate("valid");
  qnoise::CompressedModelInfo info;
  info.rest = qnoise::WeightScheme::Float32;
  info.plan = {{"scheme", "float"}};
  info.task = task->config();
  info.artifacts = task->artifacts();
  info.recomputed_buffers = task->recomputed_buffers();
  const auto stored = qnoise::make_compressed_model(task->model(), {}, info);
  ASSERT_TRUE(stored.batch_norm_folded);
  // Neither the statistics (folded into weight and bias) nor the step counters are stored.
  for (const auto& [name, weight] : stored.tensors) {
    EXPECT_EQ(name.find("running_"), std::string::npos) << name;
    EXPECT_EQ(name.find("num_batches_tracked"), std::string::npos) << name;
  }
  const auto path = temp_path("folded_bn.qnz");
  qnoise::write_qnz(path, stored);
  const auto after = qnoise::load_compressed_task(qnoise::read_qnz(path))->evaluate("valid");
  EXPECT_EQ(after.at("accuracy"), before.at("accuracy"));
  EXPECT_NEAR(after.at("loss"), before.at("loss"), 1e-5 * before.at("loss"));
}

TEST(CompressionPipeline, SharedLayersAreQuantizedAndStoredOnce) {
  // 4 layers sharing weights in groups of 2 (the paper's sharing) hold 2 unique layers.
  const auto dir = tiny_wikitext("ipq_shared", "and god said , let there be light : and there was light .", 40);
  torch::manual_seed(1);
  auto task = qnoise::make_training_task(
      {{"task", "lm"}, {"data", dir}, {"batch_size", 4}, {"seq_len", 16},
       {"model", {{"d_model", 16}, {"heads", 2}, {"ffn_dim", 32}, {"layers", 4}, {"share_every", 2}}}});
  auto options = qnoise::default_compression_options(*task, "ipq");
  options.ipq.plan.finetune_steps = 2;
  options.ipq.progress.mode = qnoise::ProgressOptions::Mode::Off;
  const auto result = qnoise::compress_task_model(*task, options);
  int fc1_layers = 0;
  for (const auto& [name, weight] : result.model.tensors)
    if (name.find(".fc1.weight") != std::string::npos) {
      ++fc1_layers;
      EXPECT_EQ(weight.scheme, qnoise::WeightScheme::PQ) << name;
    }
  EXPECT_EQ(fc1_layers, 2);
  const auto path = temp_path("ipq_shared.qnz");
  qnoise::write_qnz(path, result.model);
  EXPECT_EQ(qnoise::load_compressed_task(qnoise::read_qnz(path))->evaluate("test"), task->evaluate("test"));
}

TEST(CompressionPipeline, LanguageModelLeavesOutItsSinusoidsAndReloads) {
  const auto dir = tiny_wikitext("ipq_lm", "in the beginning god created the heaven and the earth .", 60);
  torch::manual_seed(1);
  auto task = qnoise::make_training_task({{"task", "lm"}, {"data", dir}, {"batch_size", 4}, {"seq_len", 16},
                                          {"model", {{"d_model", 16}, {"heads", 2}, {"ffn_dim", 32}, {"layers", 1}}}});
  auto options = qnoise::default_compression_options(*task, "ipq");
  options.ipq.plan.finetune_steps = 1;
  options.ipq.progress.mode = qnoise::ProgressOptions::Mode::Off;
  const auto result = qnoise::compress_task_model(*task, options);
  EXPECT_EQ(result.model.find("sinusoids"), nullptr);
  ASSERT_NE(result.model.find("decoder.layers.0.fc1.weight"), nullptr);
  EXPECT_EQ(result.model.find("decoder.layers.0.fc1.weight")->scheme, qnoise::WeightScheme::PQ);
  EXPECT_EQ(result.model.find("decoder.layers.0.attn.q.weight")->block_size, 4);
  const auto path = temp_path("ipq_lm.qnz");
  qnoise::write_qnz(path, result.model);
  EXPECT_EQ(qnoise::load_compressed_task(qnoise::read_qnz(path))->evaluate("test"), task->evaluate("test"));
}

TEST(CompressionPipeline, Int8ActivationsAreCalibratedStoredAndReloaded) {
  auto task = small_cnn_task();
  auto options = qnoise::parse_compression_scheme("ipq+int8");
  options.ipq = quiet_ipq(qnoise::testing::small_cnn_plan(2));
  const auto result = qnoise::compress_task_model(*task, options);
  const auto* range = result.model.find("conv2.input_quant");
  ASSERT_NE(range, nullptr);
  EXPECT_EQ(range->scheme, qnoise::WeightScheme::Float32);
  EXPECT_GT(range->decode()[2].item<float>(), 0);  // calibrated: a scale
  EXPECT_EQ(result.model.plan.value("activations", ""), "int8");
  const auto path = temp_path("pipeline_act.qnz");
  qnoise::write_qnz(path, result.model);
  const auto reloaded = qnoise::load_compressed_task(qnoise::read_qnz(path));
  EXPECT_EQ(reloaded->evaluate("valid"), task->evaluate("valid"));
  EXPECT_THROW(qnoise::parse_compression_scheme("int3"), qnoise::Error);
}
