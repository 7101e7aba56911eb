// `qnoise quantize | eval | info | export` as a user runs them, on a small CNN trained for the
// test, and their errors on bad files and plans.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/run_qnoise.h"
#include "shared_fixture.h"
#include "qnoise/activation_quant.h"
#include "qnoise/compression_pipeline.h"
#include "qnoise/qnz_file.h"
#include "qnoise/safetensors.h"

namespace {

namespace fs = std::filesystem;
using qnoise::testing::contains;
using qnoise::testing::run_qnoise;

std::string temp_path(const std::string& name) { return ::testing::TempDir() + name; }

// A small CNN trained for 2 epochs of 8 updates, once per ctest run (shared_fixture.h).
const std::string& trained_checkpoint() {
  static const std::string path = qnoise::testing::shared_fixture("small_cnn_2_epochs.pt", [](const std::string& out) {
    const auto result = run_qnoise(
        "--threads 1 train --task image --arch small-cnn --channels 8 --train-limit 1024 --valid-size 500 "
        "--epochs 2 --progress off --out " + out);
    EXPECT_EQ(result.exit_code, 0) << result.output;
  });
  return path;
}

std::string quantize(const std::string& scheme, const std::string& out, const std::string& extra = "") {
  const auto result = run_qnoise("--threads 1 quantize --model " + trained_checkpoint() + " --scheme " + scheme +
                                 " --out " + out + " --progress off " + extra);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return result.output;
}

}  // namespace

TEST(CompressCommands, QuantizeInfoEvalAndExportAnInt8Model) {
  const auto qnz = temp_path("cli_int8.qnz");
  const auto output = quantize("int8", qnz);
  EXPECT_TRUE(contains(output, "compressed tensors:")) << output;
  EXPECT_TRUE(contains(output, "accuracy compressed")) << output;
  EXPECT_FALSE(fs::exists(qnz + ".stages.pt"));

  const auto info = run_qnoise("info " + qnz);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_TRUE(contains(info.output, "conv2.weight")) << info.output;
  EXPECT_TRUE(contains(info.output, "int8")) << info.output;
  EXPECT_TRUE(contains(info.output, "MiB")) << info.output;

  const auto eval = run_qnoise("--threads 1 eval " + qnz);
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_TRUE(contains(eval.output, "\"valid\":{\"accuracy\"")) << eval.output;
  // quantize's last line, for scripts: the file's real size and the metrics eval reads again.
  const auto event = output.find("\"event\":\"quantized\"");
  ASSERT_NE(event, std::string::npos) << output;
  const auto start = output.rfind('\n', event) + 1;
  const auto summary = nlohmann::json::parse(output.substr(start, output.find('\n', start) - start));
  EXPECT_EQ(summary["event"], "quantized");
  EXPECT_EQ(summary["file_bytes"].get<uintmax_t>(), fs::file_size(qnz));
  EXPECT_GT(summary["float32_bytes"].get<double>(), 3.0 * summary["stored_bytes"].get<double>());
  const auto evaluated = nlohmann::json::parse(eval.output.substr(eval.output.find('{')));
  EXPECT_NEAR(summary["compressed"]["valid"]["accuracy"].get<double>(), evaluated["valid"]["accuracy"].get<double>(),
              1e-9);

  const auto floats = temp_path("cli_export.safetensors");
  ASSERT_EQ(run_qnoise("export " + qnz + " --out " + floats).exit_code, 0);
  const auto contents = qnoise::read_safetensors(floats);
  ASSERT_NE(contents.find("conv2.weight"), nullptr);
  EXPECT_EQ(contents.find("conv2.weight")->dtype, "F32");
  // The .pt export is a checkpoint qnoise reads again.
  const auto checkpoint = temp_path("cli_export.pt");
  ASSERT_EQ(run_qnoise("export " + qnz + " --out " + checkpoint).exit_code, 0);
  const auto again = run_qnoise("--threads 1 quantize --model " + checkpoint + " --scheme int4 --progress off --out " +
                                temp_path("cli_again.qnz"));
  EXPECT_EQ(again.exit_code, 0) << again.output;
}

TEST(CompressCommands, IpqPrintsEveryLayerAndEvalReadsTheSameAccuracy) {
  const auto qnz = temp_path("cli_ipq.qnz");
  const auto output = quantize("ipq", qnz, "--finetune-steps 2");
  EXPECT_TRUE(contains(output, "\"event\":\"ipq_stage\"")) << output;
  EXPECT_TRUE(contains(output, "conv3")) << output;
  EXPECT_TRUE(contains(output, "k-means of 4 layers")) << output;
  const auto info = run_qnoise("info " + qnz);
  EXPECT_TRUE(contains(info.output, "pq K=")) << info.output;
  // `eval` of the file reads the accuracy `quantize` printed for the compressed model.
  const auto eval = run_qnoise("--threads 1 eval " + qnz);
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  const auto line = nlohmann::json::parse(eval.output.substr(eval.output.find('{')));
  char row[64];
  std::snprintf(row, sizeof row, "%.2f%%", 100 * line["valid"]["accuracy"].get<double>());
  const auto valid_row = output.substr(output.rfind("\nvalid"));
  EXPECT_TRUE(contains(valid_row.substr(0, valid_row.find('\n', 1)), row)) << row << "\n" << output;
}

TEST(CompressCommands, FinetuneNoiseReplacesThePlansRate) {
  const auto qnz = temp_path("cli_ipq_no_noise.qnz");
  quantize("ipq", qnz, "--finetune-steps 1 --finetune-noise 0");
  const auto info = run_qnoise("info " + qnz);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_TRUE(contains(info.output, R"("noise_rate":0.0)")) << info.output;
}

TEST(CompressCommands, IpqTakesFairseqsQuantizationYamlAsThePlan) {
  // The small CNN's layers as fairseq's config picks them: whole 3x3 kernels, 4 input channels of
  // the 1x1 convolution and the classifier, in two stages.
  const auto plan = temp_path("cli_fairseq_plan.yaml");
  std::ofstream(plan) << R"yaml(
n_centroids:
  Conv2d: {key: in_channels, value: {"*": 16}}
  Linear: {key: in_features, value: {"*": 16}}
block_sizes:
  Conv2d: {key: kernel_size, value: {"(3, 3)": 9, "(1, 1)": 4}}
  Linear: {key: fuzzy_name, value: {classifier: 4}}
layers_to_quantize:
  - conv3|classifier
  - conv[12]
)yaml";
  const auto qnz = temp_path("cli_fairseq.qnz");
  const auto output = quantize("ipq", qnz, "--config " + plan + " --finetune-steps 2");
  EXPECT_TRUE(contains(output, "\"event\":\"ipq_stage\"")) << output;
  EXPECT_TRUE(contains(output, "\"stage\":\"stage2\"")) << output;
  const auto info = run_qnoise("info " + qnz);
  ASSERT_EQ(info.exit_code, 0) << info.output;
  // The file's plan: fairseq's two stages, the layers listed by name.
  EXPECT_TRUE(contains(info.output, R"("block_size":4,"centroid_bits":16,"layers":["conv3","classifier"],)"
                                    R"("n_centroids":16,"name":"stage1")")) << info.output;
  EXPECT_TRUE(contains(info.output, R"("block_size":9,"centroid_bits":16,"layers":["conv1","conv2"],)"
                                    R"("n_centroids":16,"name":"stage2")")) << info.output;
  EXPECT_TRUE(contains(info.output, "pq K=16 d=9")) << info.output;  // conv2: whole 3x3 kernels
}

// The paper's int4: one range per weight tensor, and every Linear/Conv2d input quantized to 4 bits.
TEST(CompressCommands, Int4WithPerTensorRangesAndFourBitActivations) {
  const auto qnz = temp_path("cli_int4_a4.qnz");
  const auto output = quantize("int4", qnz, "--scalar-ranges tensor --activation-bits 4");
  const auto event = output.find("\"event\":\"quantized\"");
  ASSERT_NE(event, std::string::npos) << output;
  const auto start = output.rfind('\n', event) + 1;
  const auto line = nlohmann::json::parse(output.substr(start, output.find('\n', start) - start));
  EXPECT_EQ(line["scalar_ranges"], "tensor");
  EXPECT_EQ(line["activation_bits"], 4);
  const auto contents = qnoise::read_qnz(qnz);
  const auto* state = contents.find("conv2.input_quant");
  ASSERT_NE(state, nullptr);
  EXPECT_EQ(qnoise::input_quant_bits(state->decode()), 4);
  const auto* weight = contents.find("conv2.weight");
  ASSERT_NE(weight, nullptr);
  EXPECT_TRUE(weight->scale.eq(weight->scale[0]).all().item<bool>());
  // The file runs as quantize measured it, 4-bit inputs included.
  const auto eval = run_qnoise("--threads 1 eval " + qnz);
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  const auto evaluated = nlohmann::json::parse(eval.output.substr(eval.output.find('{')));
  EXPECT_NEAR(line["compressed"]["valid"]["accuracy"].get<double>(), evaluated["valid"]["accuracy"].get<double>(), 1e-9);

  // --activation-ranges mse: every input range within min-max's, some narrower, recorded in the
  // output line and the file; the file still runs as quantize measured it.
  const auto mse_qnz = temp_path("cli_int4_a4_mse.qnz");
  const auto mse_output = quantize("int4", mse_qnz, "--scalar-ranges tensor --activation-bits 4 --activation-ranges mse");
  EXPECT_TRUE(contains(mse_output, R"("activation_ranges":"mse")")) << mse_output;
  const auto mse_contents = qnoise::read_qnz(mse_qnz);
  EXPECT_TRUE(contains(mse_contents.plan.dump(), R"("activation_ranges":"mse")")) << mse_contents.plan.dump();
  int narrower = 0;
  for (const std::string layer : {"conv1", "conv2", "conv3", "classifier"}) {
    const auto* minmax_state = contents.find(layer + ".input_quant");
    const auto* mse_state = mse_contents.find(layer + ".input_quant");
    ASSERT_NE(minmax_state, nullptr) << layer;
    ASSERT_NE(mse_state, nullptr) << layer;
    const auto wide = minmax_state->decode(), chosen = mse_state->decode();
    EXPECT_GE(chosen[0].item<float>(), wide[0].item<float>()) << layer;
    EXPECT_LE(chosen[1].item<float>(), wide[1].item<float>()) << layer;
    narrower += chosen[1].item<float>() < wide[1].item<float>();
  }
  EXPECT_GT(narrower, 0);
  const auto mse_eval = run_qnoise("--threads 1 eval " + mse_qnz);
  ASSERT_EQ(mse_eval.exit_code, 0) << mse_eval.output;
  const auto mse_start = mse_output.rfind('\n', mse_output.find("\"event\":\"quantized\"")) + 1;
  const auto mse_line = nlohmann::json::parse(mse_output.substr(mse_start, mse_output.find('\n', mse_start) - mse_start));
  EXPECT_NEAR(mse_line["compressed"]["valid"]["accuracy"].get<double>(),
              nlohmann::json::parse(mse_eval.output.substr(mse_eval.output.find('{')))["valid"]["accuracy"].get<double>(),
              1e-9);
}

// Training with int4 QAT on weights and inputs: the checkpoint keeps the inputs' ranges, quantize
// keeps them for the same bits and refuses others.
TEST(CompressCommands, ActivationNoiseRangesTravelFromTrainingToTheFile) {
  const auto checkpoint = temp_path("cli_int4_qat.pt");
  const auto trained = run_qnoise(
      "--threads 1 train --task image --arch small-cnn --channels 8 --train-limit 512 --valid-size 200 --max-steps 6 "
      "--quant-noise-scalar 1 --bits 4 --scalar-ranges tensor --activation-bits 4 --progress off --out " + checkpoint);
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const auto qnz = temp_path("cli_int4_qat.qnz");
  const auto result = run_qnoise("--threads 1 quantize --model " + checkpoint +
                                 " --scheme int4 --scalar-ranges tensor --activation-bits 4 --progress off --out " + qnz);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto state = qnoise::read_qnz(qnz).find("conv2.input_quant")->decode();
  EXPECT_EQ(qnoise::input_quant_bits(state), 4);
  // The range is the one training tracked, not one calibrated again.
  const auto trained_task = qnoise::load_trained_task(checkpoint);
  const auto trained_state = trained_task->model().named_buffers()["conv2.input_quant"];
  EXPECT_TRUE(torch::equal(state, trained_state)) << state << trained_state;
  // Asked for, an observer replaces the trained ranges, and the file and output say so.
  const auto mse_qnz = temp_path("cli_int4_qat_mse.qnz");
  const auto recalibrated = run_qnoise("--threads 1 quantize --model " + checkpoint +
                                       " --scheme int4 --scalar-ranges tensor --activation-bits 4 "
                                       "--activation-ranges mse --progress off --out " + mse_qnz);
  ASSERT_EQ(recalibrated.exit_code, 0) << recalibrated.output;
  EXPECT_TRUE(contains(recalibrated.output, R"("activation_ranges":"mse")")) << recalibrated.output;
  const auto mse_file = qnoise::read_qnz(mse_qnz);
  EXPECT_EQ(mse_file.plan.at("activation_ranges"), "mse");
  const auto mse_state = mse_file.find("conv2.input_quant")->decode();
  EXPECT_EQ(qnoise::input_quant_bits(mse_state), 4);
  EXPECT_FALSE(torch::equal(mse_state, trained_state)) << mse_state << trained_state;
  const auto other = run_qnoise("--threads 1 quantize --model " + checkpoint +
                                " --scheme int4 --activation-bits 8 --progress off --out " + temp_path("x.qnz"));
  EXPECT_NE(other.exit_code, 0);
  EXPECT_TRUE(contains(other.output, "4-bit inputs")) << other.output;
  const auto no_rate = run_qnoise("--threads 1 train --task image --arch small-cnn --activation-bits 4 --out " +
                                  temp_path("x.pt"));
  EXPECT_NE(no_rate.exit_code, 0);
  EXPECT_TRUE(contains(no_rate.output, "--activation-bits needs --quant-noise-scalar")) << no_rate.output;
}

TEST(CompressCommands, BadFilesPlansAndOptionsAreClearErrors) {
  const auto qnz = temp_path("cli_bad_source.qnz");
  quantize("int8", qnz);
  // A truncated file.
  std::ifstream in(qnz, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto cut = temp_path("cli_cut.qnz");
  std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  const auto plan_nothing = temp_path("cli_plan_nothing.json");
  std::ofstream(plan_nothing) << R"({"stages": [{"name": "ffn", "layers": ["*.fc1"], "block_size": 8}]})";
  const auto plan_divide = temp_path("cli_plan_divide.json");
  std::ofstream(plan_divide) << R"({"stages": [{"name": "all", "layers": ["conv3"], "block_size": 5}]})";
  const auto yaml_nothing = temp_path("cli_plan_nothing.yaml");
  std::ofstream(yaml_nothing) << "layers_to_quantize: [decoder]\n";
  const auto yaml_broken = temp_path("cli_plan_broken.yml");
  std::ofstream(yaml_broken) << "layers_to_quantize: [conv1\n";
  const std::string model = " --model " + trained_checkpoint() + " --progress off ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"eval /nonexistent/model.qnz", "/nonexistent/model.qnz"},
      {"eval " + cut, cut},
      {"info " + cut, cut},
      {"quantize --model " + qnz + " --out " + temp_path("x.qnz"), "not a qnoise training checkpoint"},
      {"quantize" + model + "--config " + plan_nothing + " --out " + temp_path("x.qnz"), "'*.fc1' matches no"},
      {"quantize" + model + "--config " + plan_divide + " --out " + temp_path("x.qnz"), "layer 'conv3'"},
      {"quantize" + model + "--config " + yaml_nothing + " --out " + temp_path("x.qnz"),
       "'" + yaml_nothing + "': layers_to_quantize[0] 'decoder' matches no layer"},
      {"quantize" + model + "--config " + yaml_broken + " --out " + temp_path("x.qnz"),
       "'" + yaml_broken + "' is not valid YAML"},
      {"quantize" + model + "--scheme int8 --config " + plan_nothing + " --out " + temp_path("x.qnz"), "--scheme ipq"},
      {"quantize" + model + "--out " + temp_path("x.pt"), ".qnz"},
      {"quantize" + model + "--scheme int3 --out " + temp_path("x.qnz"), "int3"},
      {"quantize" + model + "--finetune-noise 1 --out " + temp_path("x.qnz"), "--finetune-noise must be in [0, 1)"},
      {"quantize" + model + "--scalar-ranges tensor --out " + temp_path("x.qnz"), "--scalar-ranges applies to"},
      {"quantize" + model + "--scheme int4 --activation-bits 9 --out " + temp_path("x.qnz"), "--activation-bits must"},
      {"quantize" + model + "--scheme ipq+int8 --activation-bits 4 --out " + temp_path("x.qnz"), "--scheme ipq"},
      {"quantize" + model + "--scheme int4 --activation-ranges mse --out " + temp_path("x.qnz"),
       "--activation-ranges applies to"},
      {"quantize" + model + "--scheme int4 --activation-bits 4 --activation-ranges histogram --out " +
           temp_path("x.qnz"), "--activation-ranges"},
      {"export " + qnz + " --out " + temp_path("x.bin"), ".safetensors"},
      // Pruning needs a Transformer's layers; a CNN has none.
      {"prune --model " + trained_checkpoint() + " --out " + temp_path("x.pt"), "only Transformer models"},
      {"prune --model " + trained_checkpoint() + " --out " + temp_path("x.qnz"), ".pt checkpoint"},
  };
  for (const auto& [arguments, message] : cases) {
    const auto result = run_qnoise(arguments);
    EXPECT_NE(result.exit_code, 0) << arguments;
    EXPECT_TRUE(contains(result.output, message)) << arguments << "\n" << result.output;
  }
}
