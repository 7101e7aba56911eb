#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "qnoise/checkpoint.h"
#include "qnoise/error.h"
#include "qnoise/noisy_layers.h"
#include "qnoise/optimizer.h"

namespace {

torch::nn::Sequential make_model(uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::ReLU(), torch::nn::Linear(16, 1));
}

// Steps that use the random generator (batches, Quant-Noise masks), so resuming must restore it.
void train(torch::nn::Sequential& model, torch::optim::Optimizer& optimizer, int steps) {
  qnoise::NoisyLayers noisy(*model, {{"*", 0.2, 4, qnoise::NoiseFunction::pq()}});
  for (int step = 0; step < steps; ++step) {
    auto x = torch::randn({32, 8});
    auto y = x.sum(1, true);
    torch::Tensor loss;
    {
      auto scope = noisy.draw();
      loss = torch::mse_loss(model->forward(x), y);
    }
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
}

std::string temp_path(const std::string& name) { return testing::TempDir() + name; }

}  // namespace

TEST(Checkpoint, ResumingGivesTheSameWeightsAsNeverStopping) {
  for (auto kind : {qnoise::OptimizerKind::AdamW, qnoise::OptimizerKind::SGD}) {
    qnoise::OptimizerOptions options;
    options.kind = kind;
    options.lr = 1e-2;
    auto straight = make_model(1);
    auto straight_optimizer = qnoise::make_optimizer(straight->parameters(), options);
    train(straight, *straight_optimizer, 10);

    auto first = make_model(1);
    auto first_optimizer = qnoise::make_optimizer(first->parameters(), options);
    train(first, *first_optimizer, 4);
    const std::string path = temp_path("qnoise_resume.ckpt");
    qnoise::save_checkpoint(path, *first, first_optimizer.get(), {4, 0, "{\"model\": \"mlp\"}", {}});
    torch::rand({100});  // the generator moves on after the save...

    auto resumed = make_model(99);  // ...and the new model starts elsewhere
    auto resumed_optimizer = qnoise::make_optimizer(resumed->parameters(), options);
    auto state = qnoise::load_checkpoint(path, *resumed, resumed_optimizer.get());
    EXPECT_EQ(state.step, 4);
    EXPECT_EQ(state.metadata, "{\"model\": \"mlp\"}");
    train(resumed, *resumed_optimizer, 6);
    for (size_t i = 0; i < straight->parameters().size(); ++i)
      EXPECT_TRUE(torch::equal(straight->parameters()[i], resumed->parameters()[i])) << "parameter " << i;
  }
}

TEST(Checkpoint, MissingCorruptOrMismatchedFilesAreErrorsNamingTheFile) {
  auto model = make_model(0);
  EXPECT_THROW(qnoise::load_checkpoint(temp_path("no_such.ckpt"), *model, nullptr), qnoise::Error);
  const std::string path = temp_path("qnoise_checkpoint_bad.ckpt");
  qnoise::save_checkpoint(path, *model, nullptr, {});
  std::string bytes;
  {
    std::ifstream file(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(file), {});
  }
  for (size_t length : {size_t{0}, size_t{10}, bytes.size() / 2, bytes.size() - 1}) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(length));
    try {
      qnoise::load_checkpoint(path, *model, nullptr);
      ADD_FAILURE() << "truncated at " << length << " bytes was accepted";
    } catch (const qnoise::Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  qnoise::save_checkpoint(path, *model, nullptr, {});
  torch::nn::Sequential wider(torch::nn::Linear(8, 32), torch::nn::ReLU(), torch::nn::Linear(32, 1));
  try {
    qnoise::load_checkpoint(path, *wider, nullptr);
    FAIL() << "a checkpoint of another shape was accepted";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("but the model expects [32"), std::string::npos) << e.what();
  }
}
