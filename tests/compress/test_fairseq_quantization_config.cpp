// fairseq's iPQ configuration YAML as a qnoise plan: fairseq's own example on a module named as
// fairseq's Transformer LM names its layers, attribute keys on Linear / Conv2d / Embedding, the
// regex semantics, and every kind of bad file or mismatch as an error naming it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qnoise/error.h"
#include "qnoise/fairseq_quantization_config.h"
#include "qnoise/module_compression.h"
#include "qnoise_binary.h"  // QNOISE_SOURCE_DIR

namespace {

using Names = std::vector<std::string>;

// A decoder layer with fairseq's module names: self_attn.{q,k,v,out}_proj, its LayerNorm, fc1, fc2.
struct FairseqDecoderLayer : torch::nn::Module {
  explicit FairseqDecoderLayer(int64_t width) {
    auto attention = std::make_shared<torch::nn::Module>();
    for (const char* name : {"q_proj", "k_proj", "v_proj", "out_proj"})
      attention->register_module(name, torch::nn::Linear(width, width));
    register_module("self_attn", attention);
    register_module("self_attn_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
    register_module("fc1", torch::nn::Linear(width, 2 * width));
    register_module("fc2", torch::nn::Linear(2 * width, width));
  }
};

// decoder.layers.{0,1} and decoder.embed_tokens.embeddings.{0,1}.{0: Embedding, 1: Linear}, as
// fairseq's adaptive input holds each band's embedding and projection.
std::shared_ptr<torch::nn::Module> fairseq_shaped_lm() {
  auto layers = torch::nn::ModuleList();
  for (int i = 0; i < 2; ++i) layers->push_back(std::make_shared<FairseqDecoderLayer>(16));
  auto bands = torch::nn::ModuleList();
  bands->push_back(torch::nn::Sequential(torch::nn::Embedding(40, 16), torch::nn::Linear(16, 16)));
  bands->push_back(torch::nn::Sequential(torch::nn::Embedding(24, 8), torch::nn::Linear(8, 16)));
  auto embed_tokens = std::make_shared<torch::nn::Module>();
  embed_tokens->register_module("embeddings", bands);
  auto decoder = std::make_shared<torch::nn::Module>();
  decoder->register_module("layers", layers);
  decoder->register_module("embed_tokens", embed_tokens);
  auto model = std::make_shared<torch::nn::Module>();
  model->register_module("decoder", decoder);
  return model;
}

// A small CNN-like model: a 3x3 and a 1x1 convolution, an embedding and two Linear layers.
std::shared_ptr<torch::nn::Module> small_mixed_model() {
  auto model = std::make_shared<torch::nn::Module>();
  model->register_module("embed", torch::nn::Embedding(32, 16));
  model->register_module("conv3x3", torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 16, 3).padding(1)));
  model->register_module("conv1x1", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 16, 1)));
  model->register_module("fc_in16", torch::nn::Linear(16, 32));
  model->register_module("fc_in32", torch::nn::Linear(32, 8));
  return model;
}

qnoise::QuantizationPlan plan_for(const std::string& yaml, torch::nn::Module& model,
                                  const qnoise::QuantizationPlan& settings = {}) {
  return qnoise::fairseq_quantization_plan(qnoise::parse_fairseq_quantization_config(yaml), model, settings);
}

void expect_stage(const qnoise::PqStage& stage, const std::string& name, const Names& layers, int64_t block_size,
                  int64_t n_centroids) {
  EXPECT_EQ(stage.name, name);
  EXPECT_EQ(stage.layers, layers) << name;
  EXPECT_EQ(stage.scheme, qnoise::StageScheme::Pq) << name;
  EXPECT_EQ(stage.block_size, block_size) << name;
  EXPECT_EQ(stage.n_centroids, n_centroids) << name;
  EXPECT_EQ(stage.centroid_bits, 16) << name;  // fairseq stores centroids in float16
}

const std::string kExamplePath = std::string(QNOISE_SOURCE_DIR) + "/tests/data/fairseq/transformer_quantization_config.yaml";

}  // namespace

TEST(FairseqQuantizationConfig, ReadsFairseqsTransformerExampleInItsOrder) {
  const auto config = qnoise::read_fairseq_quantization_config(kExamplePath);
  ASSERT_EQ(config.n_centroids.size(), 2u);
  EXPECT_EQ(config.n_centroids.at("Linear").key, "in_features");
  EXPECT_EQ(config.n_centroids.at("Embedding").key, "embedding_dim");
  const std::vector<std::pair<std::string, int64_t>> all_256 = {{"*", 256}};
  EXPECT_EQ(config.n_centroids.at("Linear").values, all_256);
  EXPECT_EQ(config.block_sizes.at("Linear").key, "fuzzy_name");
  const std::vector<std::pair<std::string, int64_t>> linear_blocks = {{"fc", 8}, {"attn", 4}, {"emb", 4}};
  EXPECT_EQ(config.block_sizes.at("Linear").values, linear_blocks);
  // The regexes as written: YAML plain scalars keep both backslashes of each pair.
  EXPECT_EQ(config.layers_to_quantize,
            (Names{R"(decoder\\.layers\\.\d+\\.fc[12])", R"(decoder\\.embed_tokens\\.embeddings\\.[012]\\.[01])",
                   R"(decoder\\.layers\\.\d+\\.self_attn\\.(k_proj|v_proj|q_proj|out_proj))"}));
}

TEST(FairseqQuantizationConfig, KeysLeftOutTakeFairseqsDefaults) {
  const auto config = qnoise::parse_fairseq_quantization_config("layers_to_quantize: [fc]");
  EXPECT_EQ(config.layers_to_quantize, Names{"fc"});
  const auto defaults = qnoise::default_fairseq_quantization_config();
  EXPECT_EQ(config.block_sizes.at("Embedding").values, defaults.block_sizes.at("Embedding").values);
  EXPECT_EQ(config.n_centroids.at("Linear").values, defaults.n_centroids.at("Linear").values);
  EXPECT_EQ(defaults.layers_to_quantize.size(), 3u);
}

TEST(FairseqQuantizationConfig, TellsYamlFilesFromJson) {
  EXPECT_TRUE(qnoise::is_fairseq_quantization_config_path("configs/transformer.yaml"));
  EXPECT_TRUE(qnoise::is_fairseq_quantization_config_path("plan.yml"));
  EXPECT_FALSE(qnoise::is_fairseq_quantization_config_path("plan.json"));
  EXPECT_FALSE(qnoise::is_fairseq_quantization_config_path("yaml"));
}

TEST(FairseqQuantizationPlan, FairseqsExampleSplitsTheEmbeddingStageByBlockSize) {
  auto model = fairseq_shaped_lm();
  qnoise::QuantizationPlan settings;
  settings.finetune_steps = 300;
  settings.lr = 2e-4;
  const auto plan =
      qnoise::fairseq_quantization_plan(qnoise::read_fairseq_quantization_config(kExamplePath), *model, settings);
  ASSERT_EQ(plan.stages.size(), 4u);
  expect_stage(plan.stages[0], "stage1",
               {"decoder.layers.0.fc1", "decoder.layers.0.fc2", "decoder.layers.1.fc1", "decoder.layers.1.fc2"}, 8, 256);
  // Embeddings: blocks of 8 (Embedding: "emb"), their projections blocks of 4 (Linear: "emb").
  expect_stage(plan.stages[1], "stage2_block8_k256",
               {"decoder.embed_tokens.embeddings.0.0", "decoder.embed_tokens.embeddings.1.0"}, 8, 256);
  expect_stage(plan.stages[2], "stage2_block4_k256",
               {"decoder.embed_tokens.embeddings.0.1", "decoder.embed_tokens.embeddings.1.1"}, 4, 256);
  expect_stage(plan.stages[3], "stage3",
               {"decoder.layers.0.self_attn.q_proj", "decoder.layers.0.self_attn.k_proj",
                "decoder.layers.0.self_attn.v_proj", "decoder.layers.0.self_attn.out_proj",
                "decoder.layers.1.self_attn.q_proj", "decoder.layers.1.self_attn.k_proj",
                "decoder.layers.1.self_attn.v_proj", "decoder.layers.1.self_attn.out_proj"},
               4, 256);
  // The settings fairseq's YAML does not have come from the caller's plan.
  EXPECT_EQ(plan.finetune_steps, 300);
  EXPECT_DOUBLE_EQ(plan.lr, 2e-4);
  // compress_module takes exactly these layers, stage by stage.
  const auto resolved = qnoise::resolve_plan_layers(*model, plan);
  for (size_t s = 0; s < plan.stages.size(); ++s) EXPECT_EQ(resolved[s], plan.stages[s].layers);
}

TEST(FairseqQuantizationPlan, AttributeKeysPickValuesByTheLayersAttributesAsPythonPrintsThem) {
  auto model = small_mixed_model();
  const auto plan = plan_for(R"yaml(
n_centroids:
  Linear: {key: out_features, value: {8: 16, "*": 64}}
  Conv2d: {key: in_channels, value: {"*": 32}}
  Embedding: {key: num_embeddings, value: {32: 8}}
block_sizes:
  Linear: {key: in_features, value: {16: 4, "*": 8}}
  Conv2d: {key: kernel_size, value: {"(3, 3)": 9, "(1, 1)": 4}}
  Embedding: {key: embedding_dim, value: {16: 2}}
layers_to_quantize:
  - conv
  - embed|fc_in
)yaml",
                             *model);
  ASSERT_EQ(plan.stages.size(), 5u);
  expect_stage(plan.stages[0], "stage1_block9_k32", {"conv3x3"}, 9, 32);
  expect_stage(plan.stages[1], "stage1_block4_k32", {"conv1x1"}, 4, 32);
  expect_stage(plan.stages[2], "stage2_block2_k8", {"embed"}, 2, 8);
  expect_stage(plan.stages[3], "stage2_block4_k64", {"fc_in16"}, 4, 64);
  expect_stage(plan.stages[4], "stage2_block8_k16", {"fc_in32"}, 8, 16);
}

TEST(FairseqQuantizationPlan, RegexesMatchFromTheStartWithAnOptionalModulePrefix) {
  // As fairseq's re.match: anchored at the start only, so "fc" takes fc_in16 and fc_in32.
  auto model = small_mixed_model();
  const std::string tables = R"yaml(
n_centroids: {Linear: {key: in_features, value: {"*": 16}}, Conv2d: {key: in_channels, value: {"*": 16}}}
block_sizes: {Linear: {key: in_features, value: {"*": 8}}, Conv2d: {key: in_channels, value: {"*": 4}}}
)yaml";
  auto plan = plan_for(tables + "layers_to_quantize: [fc, conv1x1]", *model);
  ASSERT_EQ(plan.stages.size(), 2u);
  EXPECT_EQ(plan.stages[0].layers, (Names{"fc_in16", "fc_in32"}));
  EXPECT_EQ(plan.stages[1].layers, Names{"conv1x1"});
  // "$" ends a match where the regex ends; a single backslash works as well as fairseq's pair.
  plan = plan_for(tables + R"(layers_to_quantize: ['fc_in\d6$'])", *model);
  EXPECT_EQ(plan.stages[0].layers, Names{"fc_in16"});
  // A model wrapped as DataParallel wraps it ("module."): the same regexes still match.
  auto wrapper = std::make_shared<torch::nn::Module>();
  wrapper->register_module("module", model);
  plan = plan_for(tables + "layers_to_quantize: [fc_in32]", *wrapper);
  EXPECT_EQ(plan.stages[0].layers, Names{"module.fc_in32"});
}

TEST(FairseqQuantizationConfig, BadFilesAreErrorsNamingTheProblem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"n_centroids: {Linear: [unclosed", "is not valid YAML"},
      {"", "(it is empty)"},
      {"- just\n- a list", "must be a YAML map"},
      {"stages: []", "unknown key 'stages' (line 1; fairseq's keys are n_centroids, block_sizes, layers_to_quantize; "
                     "a qnoise plan with stages is a .json file)"},
      {"n_centroid: {}", "unknown key 'n_centroid'"},
      {"block_sizes: [8]", "block_sizes must map layer types"},
      {"block_sizes: {Linear: 8}", "block_sizes.Linear must be {key:"},
      {"block_sizes: {Linear: {value: {'*': 8}}}", "block_sizes.Linear needs a 'key'"},
      {"block_sizes: {Linear: {key: in_features}}", "block_sizes.Linear needs a 'value'"},
      {"block_sizes: {Linear: {key: in_features, value: {'*': 8}, values: 1}}", "block_sizes.Linear has no field 'values'"},
      {"block_sizes: {Linear: {key: in_features, value: {'*': eight}}}", "block_sizes.Linear.value.*: 'eight' is not a positive integer"},
      {"block_sizes: {Linear: {key: in_features, value: {'*': 0}}}", "'0' is not a positive integer"},
      {"n_centroids: {Linear: {key: in_features, value: {'*': 70000}}}", "n_centroids must be in [2, 65536], got 70000"},
      {"layers_to_quantize: []", "layers_to_quantize must be a non-empty list"},
      {"layers_to_quantize: fc", "layers_to_quantize must be a non-empty list"},
      {"layers_to_quantize: [fc, [x]]", "layers_to_quantize[1] must be a regex"},
  };
  for (const auto& [yaml, message] : cases) {
    try {
      qnoise::parse_fairseq_quantization_config(yaml, "'plan.yaml'");
      ADD_FAILURE() << "no error for: " << yaml;
    } catch (const qnoise::Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << yaml << "\n" << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("'plan.yaml'", 0), 0u) << e.what();
    }
  }
  EXPECT_THROW(qnoise::read_fairseq_quantization_config("/nonexistent/plan.yaml"), qnoise::Error);
}

TEST(FairseqQuantizationPlan, LayersTheConfigDoesNotFitAreErrorsNamingTheLayer) {
  auto lm = fairseq_shaped_lm();
  auto mixed = small_mixed_model();
  const std::string linear_only = R"yaml(
n_centroids: {Linear: {key: in_features, value: {"*": 16}}}
block_sizes: {Linear: {key: fuzzy_name, value: {fc: 8, proj: 4}}}
)yaml";
  const std::vector<std::tuple<std::string, torch::nn::Module*, std::string>> cases = {
      {linear_only + "layers_to_quantize: [encoder]", lm.get(),
       "layers_to_quantize[0] 'encoder' matches no layer (a regex matches module names from their start); the "
       "model's layers with weights: decoder.layers.0.self_attn.q_proj"},
      {linear_only + "layers_to_quantize: ['decoder\\.(']", lm.get(), "is not a regular expression qnoise reads"},
      {linear_only + "layers_to_quantize: ['decoder\\.layers\\.0\\.self_attn']", lm.get(),
       "matches 'decoder.layers.0.self_attn_layer_norm', a LayerNorm: fairseq's iPQ and qnoise quantize Linear, "
       "Conv2d and Embedding layers only"},
      {linear_only + "layers_to_quantize: ['decoder\\.embed_tokens']", lm.get(),
       "block_sizes has no entry for Embedding (layer 'decoder.embed_tokens.embeddings.0.0'); it has: Linear"},
      {linear_only + "layers_to_quantize: ['decoder\\.layers\\.\\d+\\.fc1', 'decoder\\.layers\\.1\\.fc']", lm.get(),
       "matches 'decoder.layers.1.fc1', which layers_to_quantize[0] already quantizes"},
      {linear_only + "layers_to_quantize: ['decoder\\.embed_tokens\\.embeddings\\.0\\.1']", lm.get(),
       "block_sizes.Linear: no fuzzy_name key is part of the layer name 'decoder.embed_tokens.embeddings.0.1' and no "
       "\"*\" default"},
      {R"yaml(
n_centroids: {Linear: {key: in_features, value: {32: 16}}}
block_sizes: {Linear: {key: in_features, value: {"*": 8}}}
layers_to_quantize: [fc_in]
)yaml",
       mixed.get(), "n_centroids.Linear: no value for in_features=16 (layer 'fc_in16') and no \"*\" default"},
      {R"yaml(
n_centroids: {Conv2d: {key: kernel, value: {"*": 16}}}
block_sizes: {Conv2d: {key: in_channels, value: {"*": 8}}}
layers_to_quantize: [conv]
)yaml",
       mixed.get(), "n_centroids.Conv2d: key 'kernel' is neither fuzzy_name nor an attribute of Conv2d"},
      // fairseq's default tables and regexes on a model named otherwise.
      {"block_sizes: {Linear: {key: in_features, value: {'*': 8}}}", mixed.get(),
       "layers_to_quantize[0] 'decoder\\.layers\\.\\d+\\.fc[12]' matches no layer"},
      // A block size that does not divide the layer is caught with the plan's other checks when compressing.
  };
  for (const auto& [yaml, model, message] : cases) {
    try {
      plan_for(yaml, *model);
      ADD_FAILURE() << "no error for: " << yaml;
    } catch (const qnoise::Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << yaml << "\n" << e.what();
    }
  }
}
