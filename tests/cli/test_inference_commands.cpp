// `qnoise generate` and `qnoise predict` as a user runs them on a .qnz file alone (the data the
// model was trained on deleted), and their errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "cli/run_qnoise.h"
#include "train/small_qnz_models.h"
#include "qnoise/idx_file.h"
#include "qnoise/image_dataset.h"
#include "qnoise/inference_model.h"
#include "qnoise/prediction.h"
#include "qnoise/sentence_pairs.h"
#include "qnoise/task_model.h"
#include "qnoise/text_corpus.h"
#include "qnoise/text_generation.h"
#include "kernels/cpu_features.h"

namespace {

namespace fs = std::filesystem;
using qnoise::testing::contains;
using qnoise::testing::run_qnoise;
using qnoise::testing::unique_temp_path;

// The tiny LM as int8, its training data deleted; once per test process.
const std::string& lm_file() {
  static const std::string path = qnoise::testing::tiny_lm_file_without_data();
  return path;
}

const std::string& image_file() {
  static const std::string path = qnoise::testing::small_cnn_file();
  return path;
}

std::string fashion_mnist_file(const char* name) {
  return std::string(qnoise::kFashionMnistDirectory) + "/" + name;
}

void write_pgm(const std::string& path, const at::Tensor& image) {
  std::ofstream file(path, std::ios::binary);
  file << "P5\n" << image.size(1) << " " << image.size(0) << "\n255\n";
  const at::Tensor bytes = image.contiguous();
  file.write(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), bytes.numel());
}

// An IDX file (magic, big-endian dims, uint8 data).
void write_idx(const std::string& path, const at::Tensor& data, uint32_t magic) {
  std::ofstream file(path, std::ios::binary);
  auto put = [&](uint32_t v) {
    const char bytes[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
    file.write(bytes, 4);
  };
  put(magic);
  for (int64_t d : data.sizes()) put(static_cast<uint32_t>(d));
  const at::Tensor bytes = data.contiguous();
  file.write(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), bytes.numel());
}

// What predict prints for image i: "i<TAB>class<TAB>".
std::string prediction_line(int64_t index, const std::string& name) {
  return "\n" + std::to_string(index) + "\t" + name + "\t";
}

}  // namespace

TEST(InferenceCommands, GenerateRunsFromTheFileAloneAndRepeatsWithASeed) {
  const auto first = run_qnoise("generate " + lm_file() + " --prompt 'In the beginning' --tokens 12 --seed 3 --threads 1");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_TRUE(contains(first.output, "In the beginning ")) << first.output;
  EXPECT_TRUE(contains(first.output, "not in the model's vocabulary (read as <unk>): 1")) << first.output;  // "In"
  EXPECT_TRUE(contains(first.output, "qnoise generate: 12 tokens in ")) << first.output;
  EXPECT_TRUE(contains(first.output, "tokens/s")) << first.output;
  const auto again = run_qnoise("generate " + lm_file() + " --prompt 'In the beginning' --tokens 12 --seed 3 --threads 1");
  auto text = [](const std::string& output) { return output.substr(0, output.find("qnoise generate: 12")); };
  EXPECT_EQ(text(again.output), text(first.output));
  const auto empty = run_qnoise("generate " + lm_file() + " --tokens 3 --seed 1 --top-k 2 --temperature 0.7");
  EXPECT_EQ(empty.exit_code, 0) << empty.output;
}

TEST(InferenceCommands, Int8ActivationsAreAGlobalOptionAndAnEnvironmentVariable) {
  const auto int8 = run_qnoise("--activations int8 generate " + lm_file() + " --prompt 'in the' --tokens 8 --seed 2");
  ASSERT_EQ(int8.exit_code, 0) << int8.output;
  EXPECT_TRUE(contains(int8.output, "qnoise generate: 8 tokens in ")) << int8.output;
  const auto bad = run_qnoise("--activations int4 generate " + lm_file() + " --tokens 2");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(contains(bad.output, "--activations")) << bad.output;
  const auto env = run_qnoise("generate " + lm_file() + " --tokens 2", "QNOISE_ACTIVATIONS=int7");
  EXPECT_EQ(env.exit_code, 1);
  EXPECT_TRUE(contains(env.output, "QNOISE_ACTIVATIONS='int7': expected int8 or float")) << env.output;
}

TEST(InferenceCommands, KernelsAreChosenByTheEnvironmentAndUnknownOrMissingOnesAreErrors) {
  for (const char* path : {"reference", "auto"}) {
    const auto ok = run_qnoise("generate " + lm_file() + " --tokens 2 --seed 1", std::string("QNOISE_KERNELS=") + path);
    EXPECT_EQ(ok.exit_code, 0) << path << ": " << ok.output;
  }
  const auto unknown = run_qnoise("generate " + lm_file() + " --tokens 2", "QNOISE_KERNELS=avx9");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_TRUE(contains(unknown.output, "QNOISE_KERNELS='avx9': expected reference, avx2, avx512 or auto")) << unknown.output;
  // avx512 runs where the CPU has it and is a clear error where it does not.
  const auto wide = run_qnoise("--activations int8 generate " + lm_file() + " --tokens 2 --seed 1", "QNOISE_KERNELS=avx512");
  if (qnoise::kernels::cpu_has_avx512_vnni_vbmi()) {
    EXPECT_EQ(wide.exit_code, 0) << wide.output;
  } else {
    EXPECT_EQ(wide.exit_code, 1);
    EXPECT_TRUE(contains(wide.output, "lacks AVX-512")) << wide.output;
  }
}

TEST(InferenceCommands, GreedyGenerationPrintsTheModelsArgmaxContinuation) {
  const auto model = qnoise::load_inference_model(qnoise::read_qnz(lm_file()));
  const auto vocabulary = qnoise::artifact_vocabulary(model.artifacts);
  const auto greedy = qnoise::generate_tokens(model.language_model(), qnoise::encode_prompt("in the", vocabulary), 24,
                                              model.task.at("seq_len"), {0.0, 0}, 0);
  const auto expected = "in the" + qnoise::decode_tokens(greedy, vocabulary, /*at_line_start=*/false);
  const auto output = run_qnoise("generate " + lm_file() + " --prompt 'in the' --tokens 24 --temperature 0");
  ASSERT_EQ(output.exit_code, 0) << output.output;
  EXPECT_TRUE(contains(output.output, expected)) << output.output << "\nexpected:\n" << expected;
}

TEST(InferenceCommands, GenerateRejectsOtherModelsAndBadFilesAndOptions) {
  const auto image = run_qnoise("generate " + image_file() + " --prompt hello");
  EXPECT_EQ(image.exit_code, 1);
  EXPECT_TRUE(contains(image.output, "qnoise: error: generate needs a language model")) << image.output;

  const auto missing = run_qnoise("generate " + unique_temp_path("no_such.qnz"));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(contains(missing.output, "no_such.qnz")) << missing.output;

  const auto truncated = unique_temp_path("truncated.qnz");
  fs::copy_file(lm_file(), truncated, fs::copy_options::overwrite_existing);
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  const auto cut = run_qnoise("generate " + truncated);
  EXPECT_EQ(cut.exit_code, 1);
  EXPECT_TRUE(contains(cut.output, "qnoise: error:")) << cut.output;
  EXPECT_TRUE(contains(cut.output, "truncated.qnz")) << cut.output;

  for (const auto& [options, message] : std::vector<std::pair<std::string, std::string>>{
           {"--temperature -1", "--temperature must be >= 0"},
           {"--tokens lots", "--tokens"},
           {"--top-k -3", "--top-k must be >= 0"},
           {"--no-such-option", "--no-such-option"}}) {
    const auto bad = run_qnoise("generate " + lm_file() + " " + options);
    EXPECT_EQ(bad.exit_code, 1) << options;
    EXPECT_TRUE(contains(bad.output, "qnoise: error: ")) << options << ": " << bad.output;
    EXPECT_TRUE(contains(bad.output, message)) << options << ": " << bad.output;
  }
  const auto predict_lm = run_qnoise("predict " + lm_file() + " input.tsv");
  EXPECT_EQ(predict_lm.exit_code, 1);
  EXPECT_TRUE(contains(predict_lm.output, "use qnoise generate")) << predict_lm.output;
}

TEST(InferenceCommands, PredictClassifiesSentencePairsFromATsv) {
  const auto data = qnoise::testing::write_tiny_pairs("cli_pairs_data");
  const auto qnz = unique_temp_path("cli_pairs.qnz");
  qnoise::testing::write_tiny_pairs_qnz(data, qnz);
  const auto labelled = unique_temp_path("pairs_labelled.tsv");
  fs::copy_file(data + "/valid.tsv", labelled, fs::copy_options::overwrite_existing);
  fs::remove_all(data);
  const auto valid = qnoise::read_sentence_pairs(labelled);
  const auto model = qnoise::load_inference_model(qnoise::read_qnz(qnz));
  const auto predicted = qnoise::predict_pairs(model, valid.pairs).argmax(1);

  const auto with_labels = run_qnoise("predict " + qnz + " " + labelled);
  ASSERT_EQ(with_labels.exit_code, 0) << with_labels.output;
  int64_t correct = 0;
  for (int64_t i = 0; i < 96; ++i) {
    const int64_t p = predicted[i].item<int64_t>();
    EXPECT_TRUE(contains("\n" + with_labels.output, prediction_line(i, std::to_string(p)))) << i;
    correct += p == valid.pairs[i].label;
  }
  EXPECT_TRUE(contains(with_labels.output, "(" + std::to_string(correct) + " of 96)")) << with_labels.output;

  const auto unlabelled = unique_temp_path("pairs_unlabelled.tsv");
  std::ofstream(unlabelled) << "sentence1\tsentence2\nlight is good.\tlight was made!\n";
  const auto plain = run_qnoise("predict " + qnz + " " + unlabelled + " --top 2");
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_TRUE(contains(plain.output, "0\t")) << plain.output;
  EXPECT_FALSE(contains(plain.output, "accuracy")) << plain.output;
  const auto image_labels = run_qnoise("predict " + qnz + " " + unlabelled + " --labels x");
  EXPECT_EQ(image_labels.exit_code, 1);
  EXPECT_TRUE(contains(image_labels.output, "--labels is for image models")) << image_labels.output;
}

TEST(InferenceCommands, PredictClassifiesPgmAndIdxImagesAsTheModelDoes) {
  const auto raw = qnoise::read_idx_images(fashion_mnist_file("t10k-images-idx3-ubyte.gz")).slice(0, 0, 6);
  const auto labels = qnoise::read_idx_labels(fashion_mnist_file("t10k-labels-idx1-ubyte.gz")).slice(0, 0, 6);
  const auto model = qnoise::load_inference_model(qnoise::read_qnz(image_file()));
  const auto names = qnoise::class_names(model);
  at::Tensor expected;
  {
    // The model's own forward on the images as the test split normalises them.
    const auto test = qnoise::load_fashion_mnist(qnoise::kFashionMnistDirectory, "test");
    torch::NoGradGuard no_grad;
    expected = model.image_logits(test.images.slice(0, 0, 6)).argmax(1);
  }

  const auto pgm = unique_temp_path("shirt.pgm");
  write_pgm(pgm, raw[0]);
  const auto one = run_qnoise("predict " + image_file() + " " + pgm + " --top 3");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_TRUE(contains("\n" + one.output, prediction_line(0, names[expected[0].item<int64_t>()]))) << one.output;

  // Any size: 40x36 pixels, resized to 28x28 as the library does it.
  const auto large = torch::upsample_nearest2d(raw[1].unsqueeze(0).unsqueeze(0).to(torch::kFloat), {40, 36})
                         .squeeze(0).squeeze(0).to(torch::kByte);
  write_pgm(pgm, large);
  const auto expected_large = qnoise::predict_images(model, large.unsqueeze(0)).argmax(1).item<int64_t>();
  const auto resized = run_qnoise("predict " + image_file() + " " + pgm);
  ASSERT_EQ(resized.exit_code, 0) << resized.output;
  EXPECT_TRUE(contains("\n" + resized.output, prediction_line(0, names[expected_large]))) << resized.output;

  const auto images = unique_temp_path("six-images-idx3-ubyte");
  const auto label_file = unique_temp_path("six-labels-idx1-ubyte");
  write_idx(images, raw, qnoise::kIdxImagesMagic);
  write_idx(label_file, labels, qnoise::kIdxLabelsMagic);
  const auto all = run_qnoise("predict " + image_file() + " " + images + " --labels " + label_file + " --threads 1");
  ASSERT_EQ(all.exit_code, 0) << all.output;
  int64_t correct = 0;
  for (int64_t i = 0; i < 6; ++i) {
    EXPECT_TRUE(contains("\n" + all.output, prediction_line(i, names[expected[i].item<int64_t>()]))) << all.output;
    correct += expected[i].item<int64_t>() == labels[i].item<int64_t>();
  }
  EXPECT_TRUE(contains(all.output, "(" + std::to_string(correct) + " of 6)")) << all.output;

  std::ofstream(pgm, std::ios::binary) << "P5\n28 twenty-eight\n255\n";
  const auto bad = run_qnoise("predict " + image_file() + " " + pgm);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(contains(bad.output, "qnoise: error: ")) << bad.output;
  EXPECT_TRUE(contains(bad.output, "bad PGM header")) << bad.output;
  const auto wrong_count = run_qnoise("predict " + image_file() + " " + images + " --labels " +
                                      fashion_mnist_file("t10k-labels-idx1-ubyte.gz"));
  EXPECT_EQ(wrong_count.exit_code, 1);
  EXPECT_TRUE(contains(wrong_count.output, "10000 labels for 6 images")) << wrong_count.output;
}
