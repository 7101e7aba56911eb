// compress_module on a model that is none of the built-in families: int8, int4, iPQ with the
// caller's finetuning loop, a mixed plan, int8 activations and trained input ranges; each written
// to a .qnz, loaded into a fresh instance and run through the packed kernels, which give the
// decoded model's outputs.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <set>

#include "qnoise/activation_quant.h"
#include "qnoise/error.h"
#include "qnoise/layer_factory.h"
#include "qnoise/layer_kernel.h"
#include "qnoise/model_loading.h"
#include "qnoise/module_compression.h"
#include "qnoise/qnz_file.h"
#include "qnoise/runtime_model.h"

namespace {

// A bag-of-words classifier a user might write: an embedding, two Linear layers, a 1x1
// convolution over a [batch, 32, 2, 2] reshape, a batch norm and a head. Its forward reaches every
// layer through qnoise::run_layer, so compressed layers run from their packed kernels.
struct BagClassifierImpl : torch::nn::Module {
  BagClassifierImpl() {
    embed = register_module("embed", torch::nn::Embedding(64, 32));
    fc1 = register_module("fc1", torch::nn::Linear(32, 64));
    fc2 = register_module("fc2", torch::nn::Linear(64, 128));
    mix = register_module("mix", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 32, 1)));
    norm = register_module("norm", torch::nn::BatchNorm2d(32));
    head = register_module("head", torch::nn::Linear(128, 8));
  }
  torch::Tensor forward(const torch::Tensor& ids) {
    torch::Tensor x = qnoise::run_layer(embed, ids).mean(1);  // [batch, 32]
    x = torch::relu(qnoise::run_layer(fc1, x));
    x = torch::relu(qnoise::run_layer(fc2, x)).view({-1, 32, 2, 2});
    x = torch::relu(norm->forward(qnoise::run_layer(mix, x))).flatten(1);
    return qnoise::run_layer(head, x);
  }
  torch::nn::Embedding embed{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, head{nullptr};
  torch::nn::Conv2d mix{nullptr};
  torch::nn::BatchNorm2d norm{nullptr};
};
TORCH_MODULE(BagClassifier);

// A learnable task: the label is the most frequent id of each bag modulo 8.
struct Batches {
  std::vector<torch::Tensor> ids, labels;
};

Batches make_batches(int n, int64_t seed) {
  torch::manual_seed(seed);
  Batches b;
  for (int i = 0; i < n; ++i) {
    torch::Tensor ids = torch::randint(0, 64, {32, 6}, torch::kLong);
    b.labels.push_back(std::get<0>(torch::mode(ids, 1)).remainder(8));
    b.ids.push_back(ids);
  }
  return b;
}

double train(BagClassifier& model, const Batches& data, int epochs) {
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-2));
  model->train();
  double loss_sum = 0;
  for (int e = 0; e < epochs; ++e)
    for (size_t i = 0; i < data.ids.size(); ++i) {
      adam.zero_grad();
      torch::Tensor loss = torch::cross_entropy_loss(model->forward(data.ids[i]), data.labels[i]);
      loss.backward();
      adam.step();
      loss_sum = loss.item<double>();
    }
  model->eval();
  return loss_sum;
}

// A trained model, made once and copied for each test.
const BagClassifier& trained_model() {
  static const BagClassifier model = [] {
    torch::manual_seed(3);
    BagClassifier m;
    train(m, make_batches(16, 4), 4);
    return m;
  }();
  return model;
}

BagClassifier copy_of_trained() {
  const BagClassifier& trained = trained_model();  // trained outside the guard below
  BagClassifier copy;
  torch::NoGradGuard no_grad;
  auto from = trained->named_parameters();
  for (auto& p : copy->named_parameters()) p.value().copy_(from[p.key()]);
  auto from_buffers = trained->named_buffers();
  for (auto& b : copy->named_buffers()) b.value().copy_(from_buffers[b.key()]);
  copy->eval();
  return copy;
}

std::string temp_qnz(const std::string& name) {
  return ::testing::TempDir() + "qnoise_" + std::to_string(getpid()) + "_" + name + ".qnz";
}

qnoise::QuantizationPlan plan_of(const nlohmann::json& stages, int64_t finetune_steps = 0) {
  return qnoise::parse_quantization_plan({{"stages", stages}, {"finetune_steps", finetune_steps}, {"lr", 1e-3}});
}

// Clean passes over a few batches (calibration and batch-norm re-estimation).
std::function<void()> passes_over(BagClassifier& model, const Batches& data) {
  return [&model, &data] {
    for (const auto& ids : data.ids) model->forward(ids);
  };
}

struct Roundtrip {
  torch::Tensor in_place, kernels, decoded;
  std::vector<std::string> kernel_layers;
  qnoise::CompressedModel file;
};

// Compresses a copy of the trained model, writes and reads the file, and runs the same inputs
// through the compressed model in place, a fresh instance on the packed kernels and a fresh
// instance with every tensor decoded.
Roundtrip roundtrip(qnoise::ModuleCompressionOptions options, const std::string& name, const torch::Tensor& ids) {
  BagClassifier model = copy_of_trained();
  const qnoise::ModuleCompression result = qnoise::compress_module(*model, options);
  torch::NoGradGuard no_grad;
  Roundtrip r;
  r.in_place = model->forward(ids);
  const std::string path = temp_qnz(name);
  qnoise::write_qnz(path, result.model);
  r.file = qnoise::read_qnz(path);
  std::filesystem::remove(path);

  torch::manual_seed(99);  // a fresh instance's initial weights differ from the trained ones
  BagClassifier fresh;
  const qnoise::RuntimeLayers layers = qnoise::load_packed_module(*fresh, r.file);
  r.kernel_layers = layers.layers();
  r.kernels = fresh->forward(ids);
  BagClassifier decoded;
  qnoise::load_compressed_tensors(*decoded, r.file, {});
  decoded->eval();
  r.decoded = decoded->forward(ids);
  return r;
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tolerance, const std::string& what) {
  const double error = (a - b).abs().max().item<double>();
  EXPECT_LE(error, tolerance) << what << ": max |difference| " << error << " (outputs up to "
                              << b.abs().max().item<double>() << ")";
}

const qnoise::CompressedWeight& stored(const qnoise::CompressedModel& file, const std::string& name) {
  const qnoise::CompressedWeight* w = file.find(name);
  EXPECT_NE(w, nullptr) << name;
  return *w;
}

}  // namespace

TEST(ModuleCompression, Int8EveryLayerRunsFromKernelsAsDecoded) {
  qnoise::ModuleCompressionOptions options;
  options.plan = plan_of({{{"name", "all"}, {"layers", {"*"}}, {"scheme", "int8"}}});
  const torch::Tensor ids = make_batches(1, 7).ids[0];
  const Roundtrip r = roundtrip(options, "int8", ids);
  for (const char* layer : {"embed.weight", "fc1.weight", "fc2.weight", "mix.weight", "head.weight"})
    EXPECT_EQ(stored(r.file, layer).scheme, qnoise::WeightScheme::Int8) << layer;
  EXPECT_EQ(stored(r.file, "fc1.bias").scheme, qnoise::WeightScheme::Float16);
  EXPECT_EQ(r.kernel_layers, (std::vector<std::string>{"embed", "fc1", "fc2", "mix", "head"}));
  EXPECT_EQ(r.file.plan.at("scheme"), "int8");
  expect_close(r.kernels, r.decoded, 1e-4, "kernels against decoded");
  expect_close(r.in_place, r.decoded, 1e-4, "the compressed model in place against the file");
  // int8 per channel keeps the trained model's predictions.
  EXPECT_TRUE(torch::equal(r.decoded.argmax(1), copy_of_trained()->forward(ids).argmax(1)));
}

TEST(ModuleCompression, Int4FreezesQuantizedLayersAndRunsFromKernels) {
  qnoise::ModuleCompressionOptions options;
  options.plan = plan_of({{{"name", "all"}, {"layers", {"fc*", "head"}}, {"scheme", "int4"}}});
  BagClassifier model = copy_of_trained();
  const auto result = qnoise::compress_module(*model, options);
  EXPECT_FALSE(model->fc1->weight.requires_grad());
  EXPECT_TRUE(model->embed->weight.requires_grad());  // not in the plan: still float
  // At most 16 levels per output row.
  const auto levels = std::get<0>(at::_unique(model->fc2->weight[0]));
  EXPECT_LE(levels.numel(), 16);
  ASSERT_EQ(result.layers.size(), 3u);
  EXPECT_EQ(result.layers[0].scheme, "int4");
  EXPECT_GT(result.layers[0].relative_error, 0.0);
  EXPECT_LT(result.layers[0].relative_error, 0.2);

  const torch::Tensor ids = make_batches(1, 8).ids[0];
  const Roundtrip r = roundtrip(options, "int4", ids);
  EXPECT_EQ(stored(r.file, "fc2.weight").scheme, qnoise::WeightScheme::Int4);
  EXPECT_EQ(stored(r.file, "embed.weight").scheme, qnoise::WeightScheme::Float16);
  expect_close(r.kernels, r.decoded, 1e-4, "kernels against decoded");
}

TEST(ModuleCompression, IpqCallsTheCallersFinetuningAfterEveryStage) {
  qnoise::ModuleCompressionOptions options;
  options.plan = plan_of({{{"name", "ffn"}, {"layers", {"fc1", "fc2"}}, {"block_size", 8}, {"n_centroids", 32}},
                          {{"name", "rest"}, {"layers", {"embed", "mix", "head"}}, {"block_size", 4},
                           {"n_centroids", 32}}},
                         /*finetune_steps=*/0);
  options.plan.noise_rate = 0.1;
  BagClassifier model = copy_of_trained();
  const Batches data = make_batches(8, 11);
  std::vector<size_t> stages;
  std::vector<size_t> parameter_counts;
  std::vector<torch::Tensor> centroids_before, centroids_after;
  options.finetune = [&](qnoise::FinetuneStage& stage) {
    stages.push_back(stage.index());
    const auto parameters = stage.parameters();
    parameter_counts.push_back(parameters.size());
    torch::optim::Adam adam(parameters, torch::optim::AdamOptions(1e-3));
    for (size_t i = 0; i < data.ids.size(); ++i) {
      torch::Tensor loss;
      {
        auto scope = stage.forward_scope();
        loss = torch::cross_entropy_loss(model->forward(data.ids[i]), data.labels[i]);
      }
      adam.zero_grad();
      loss.backward();
      if (i == 0) centroids_before.push_back(parameters.back().detach().clone());
      adam.step();
    }
    centroids_after.push_back(parameters.back().detach().clone());
  };
  options.recalibrate_normalization = [&] { qnoise::reestimate_batch_norm(*model, passes_over(model, data)); };
  qnoise::PqLayers pq;
  const qnoise::ModuleCompression result = qnoise::compress_module(*model, options, &pq);
  EXPECT_EQ(stages, (std::vector<size_t>{0, 1}));
  // Stage 1: every float parameter but fc1/fc2's weights (frozen), plus their two codebooks;
  // stage 2: the embedding, conv and head weights leave, their three codebooks join.
  const size_t float_parameters = copy_of_trained()->parameters().size();
  EXPECT_EQ(parameter_counts[0], float_parameters - 2 + 2);
  EXPECT_EQ(parameter_counts[1], float_parameters - 5 + 5);
  for (size_t s = 0; s < 2; ++s) EXPECT_FALSE(torch::equal(centroids_before[s], centroids_after[s])) << s;
  ASSERT_EQ(pq.layers().size(), 5u);
  // The model holds the PQ weights: fc1's rows are made of its 32 centroids.
  const auto blocks = model->fc1->weight.detach().reshape({-1, 8});
  EXPECT_LE(std::get<0>(at::unique_dim(blocks, 0)).size(0), 32);
  EXPECT_EQ(result.model.plan.at("scheme"), "ipq");
  EXPECT_EQ(result.model.plan.at("ipq").at("stages").size(), 2u);

  // The file, loaded into a fresh instance: kernels as decoded, decoded as the model in place.
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = make_batches(1, 12).ids[0];
  const std::string path = temp_qnz("ipq");
  qnoise::write_qnz(path, result.model);
  const qnoise::CompressedModel file = qnoise::read_qnz(path);
  std::filesystem::remove(path);
  BagClassifier fresh, decoded;
  const auto layers = qnoise::load_packed_module(*fresh, file);
  EXPECT_EQ(layers.layers().size(), 5u);
  EXPECT_NE(qnoise::layer_kernel(*fresh->fc1), nullptr);
  // A placeholder of the weight's shape holding one value: the float weight does not exist.
  EXPECT_TRUE(qnoise::is_weight_placeholder(fresh->fc1->weight));
  EXPECT_LE(fresh->fc1->weight.storage().nbytes(), 4u);
  qnoise::load_compressed_tensors(*decoded, file, {});
  decoded->eval();
  expect_close(fresh->forward(ids), decoded->forward(ids), 1e-4, "kernels against decoded");
  expect_close(decoded->forward(ids), model->forward(ids), 1e-4, "decoded against the model in place");
}

TEST(ModuleCompression, MixedPlanStoresEachLayerInItsScheme) {
  qnoise::ModuleCompressionOptions options;
  options.plan = plan_of({{{"name", "first"}, {"layers", {"fc1"}}, {"scheme", "int8"}},
                          {{"name", "second"}, {"layers", {"fc2", "mix"}}, {"block_size", 8}, {"n_centroids", 16}},
                          {{"name", "last"}, {"layers", {"head"}}, {"scheme", "int4"}}});
  const Roundtrip r = roundtrip(options, "mixed", make_batches(1, 9).ids[0]);
  EXPECT_EQ(stored(r.file, "fc1.weight").scheme, qnoise::WeightScheme::Int8);
  EXPECT_EQ(stored(r.file, "fc2.weight").scheme, qnoise::WeightScheme::PQ);
  EXPECT_EQ(stored(r.file, "fc2.weight").n_centroids(), 16);
  EXPECT_EQ(stored(r.file, "mix.weight").scheme, qnoise::WeightScheme::PQ);
  EXPECT_EQ(stored(r.file, "head.weight").scheme, qnoise::WeightScheme::Int4);
  EXPECT_EQ(stored(r.file, "embed.weight").scheme, qnoise::WeightScheme::Float16);
  EXPECT_EQ(r.file.plan.at("scheme"), "mixed");
  EXPECT_EQ(r.kernel_layers, (std::vector<std::string>{"fc1", "fc2", "mix", "head"}));
  expect_close(r.kernels, r.decoded, 1e-4, "kernels against decoded");
  expect_close(r.in_place, r.decoded, 1e-4, "in place against decoded");
  // The file is smaller than float16 storage of the same tensors.
  EXPECT_LT(r.file.stored_bytes(), r.file.float_bytes() / 2);
}

TEST(ModuleCompression, Int8ActivationsAreCalibratedAndStored) {
  BagClassifier model = copy_of_trained();
  const Batches data = make_batches(4, 13);
  qnoise::ModuleCompressionOptions options;
  options.plan = plan_of({{{"name", "all"}, {"layers", {"fc*", "head"}}, {"scheme", "int8"}}});
  options.activation_bits = 8;
  options.calibration_passes = passes_over(model, data);
  const auto result = qnoise::compress_module(*model, options);
  EXPECT_EQ(result.model.plan.at("activations"), "int8");
  EXPECT_NE(result.model.find("fc1.input_quant"), nullptr);
  EXPECT_EQ(result.model.find("fc1.input_quant")->scheme, qnoise::WeightScheme::Float32);

  BagClassifier fresh, decoded;
  qnoise::load_packed_module(*fresh, result.model);
  qnoise::load_compressed_tensors(*decoded, result.model, {});
  decoded->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = make_batches(1, 14).ids[0];
  expect_close(fresh->forward(ids), decoded->forward(ids), 1e-4, "kernels against decoded");
  expect_close(decoded->forward(ids), model->forward(ids), 1e-5, "decoded against in place");
}

// A layer trained with activation noise keeps its trained input range unless an observer is
// chosen; then every layer is calibrated afresh, min-max giving exactly its inputs' extremes.
TEST(ModuleCompression, TrainedInputRangesAreKeptUnlessAnObserverIsChosen) {
  const Batches data = make_batches(4, 13);
  float low = INFINITY, high = -INFINITY;  // over fc1's inputs in the calibration passes
  {
    BagClassifier reference = copy_of_trained();
    torch::NoGradGuard no_grad;
    for (const auto& ids : data.ids) {
      const torch::Tensor input = reference->embed->forward(ids).mean(1);
      low = std::min(low, input.min().item<float>());
      high = std::max(high, input.max().item<float>());
    }
  }
  constexpr float kTrainedLow = -8, kTrainedHigh = 8;
  ASSERT_GT(low, kTrainedLow);
  ASSERT_LT(high, kTrainedHigh);

  struct Compressed {
    float low, high;
    nlohmann::json plan;
  };
  const auto compress = [&data](std::optional<qnoise::InputRangeObserver> observer) {
    BagClassifier model = copy_of_trained();
    qnoise::enable_input_quantization(*model, {"fc1"}, 4);
    torch::Tensor state = model->fc1->named_buffers()[qnoise::kInputQuantBuffer];
    {
      torch::NoGradGuard no_grad;
      state.index_put_({0}, kTrainedLow);
      state.index_put_({1}, kTrainedHigh);
    }
    qnoise::finish_input_calibration(state, "fc1");  // as training leaves it
    qnoise::ModuleCompressionOptions options;
    options.plan = plan_of({{{"name", "all"}, {"layers", {"fc*", "head"}}, {"scheme", "int4"}}});
    options.activation_bits = 4;
    options.activation_ranges = observer;
    options.calibration_passes = passes_over(model, data);
    const auto result = qnoise::compress_module(*model, options);
    const torch::Tensor stored_state = stored(result.model, "fc1.input_quant").decode();
    EXPECT_EQ(qnoise::input_quant_bits(stored_state), 4);
    return Compressed{stored_state[0].item<float>(), stored_state[1].item<float>(), result.model.plan};
  };

  const Compressed kept = compress(std::nullopt);
  EXPECT_EQ(kept.low, kTrainedLow);
  EXPECT_EQ(kept.high, kTrainedHigh);
  EXPECT_FALSE(kept.plan.contains("activation_ranges")) << kept.plan.dump();

  const Compressed minmax = compress(qnoise::InputRangeObserver::MinMax);
  EXPECT_FLOAT_EQ(minmax.low, low);
  EXPECT_FLOAT_EQ(minmax.high, high);
  EXPECT_EQ(minmax.plan.at("activation_ranges"), "minmax");

  const Compressed mse = compress(qnoise::InputRangeObserver::Mse);
  EXPECT_GE(mse.low, std::min(low, 0.0f));
  EXPECT_LE(mse.high, std::max(high, 0.0f));
  EXPECT_LT(mse.high - mse.low, high - low) << "the inputs' tails are clipped";
  EXPECT_EQ(mse.plan.at("activation_ranges"), "mse");
}

TEST(ModuleCompression, BadPlansAreClearErrors) {
  BagClassifier model = copy_of_trained();
  qnoise::ModuleCompressionOptions options;
  options.plan = plan_of({{{"name", "ffn"}, {"layers", {"ffn.*"}}}});
  try {
    qnoise::compress_module(*model, options);
    FAIL() << "a pattern that matches nothing was accepted";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'ffn.*' matches no"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fc1"), std::string::npos) << e.what();  // lists the layers there are
  }
  options.plan = plan_of({{{"name", "ffn"}, {"layers", {"fc1"}}, {"block_size", 5}}});
  try {
    qnoise::compress_module(*model, options);
    FAIL() << "a block size that does not divide the layer was accepted";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'fc1'"), std::string::npos) << e.what();
  }
  options.plan = plan_of({{{"name", "all"}, {"layers", {"*"}}, {"scheme", "int8"}}});
  options.activation_bits = 8;
  EXPECT_THROW(qnoise::compress_module(*model, options), qnoise::Error);  // no calibration passes
  EXPECT_THROW(plan_of({{{"name", "x"}, {"layers", {"*"}}, {"scheme", "int3"}}}), qnoise::Error);
}

TEST(ModuleCompression, BatchNormReestimationAveragesTheCleanPasses) {
  BagClassifier model = copy_of_trained();
  const Batches data = make_batches(3, 15);
  qnoise::reestimate_batch_norm(*model, passes_over(model, data));
  // The running mean is the plain average of the three batches' means of the conv output.
  torch::NoGradGuard no_grad;
  torch::Tensor expected = torch::zeros({32});
  for (const auto& ids : data.ids) {
    torch::Tensor x = model->embed->forward(ids).mean(1);
    x = torch::relu(model->fc1->forward(x));
    x = torch::relu(model->fc2->forward(x)).view({-1, 32, 2, 2});
    expected += model->mix->forward(x).mean({0, 2, 3}) / 3;
  }
  expect_close(model->norm->running_mean, expected, 1e-5, "running mean");
  EXPECT_FALSE(model->is_training());
  EXPECT_FALSE(model->norm->is_training());
}

TEST(ModuleCompression, AFileLoadedIntoAnotherArchitectureIsAClearError) {
  BagClassifier model = copy_of_trained();
  qnoise::ModuleCompressionOptions options;
  options.plan = plan_of({{{"name", "all"}, {"layers", {"fc*"}}, {"scheme", "int8"}}});
  const qnoise::CompressedModel file = qnoise::compress_module(*model, options).model;
  torch::nn::Sequential other(torch::nn::Linear(32, 64));
  try {
    qnoise::load_packed_module(*other, file);
    FAIL() << "a file of another architecture was loaded";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no tensor '0.weight'"), std::string::npos) << e.what();
  }
  // A layer of the same name but another shape.
  struct Narrow : torch::nn::Module {
    torch::nn::Linear fc1 = register_module("fc1", torch::nn::Linear(16, 64));
  };
  Narrow narrow;
  try {
    qnoise::load_packed_module(narrow, file);
    FAIL() << "a weight of another shape was loaded";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("fc1.weight"), std::string::npos) << e.what();
  }
}
