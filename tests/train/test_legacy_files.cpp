// .qnz files written by an earlier version (tests/data/legacy/README.md) load and evaluate to the
// numbers that version printed, from their compressed weights and decoded.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <string>

#include "cli/run_qnoise.h"
#include "qnoise/compression_pipeline.h"
#include "qnoise/kjv_corpus.h"
#include "qnoise/qnz_file.h"
#include "qnoise/runtime_task.h"
#include "train/small_qnz_models.h"

namespace {

const std::string kLegacy = std::string(QNOISE_SOURCE_DIR) + "/tests/data/legacy/";

struct Expected {
  double loss;
  double accuracy;  // < 0: a language model
};

void expect_split(qnoise::TrainingTask& task, const std::string& split, const Expected& expected) {
  const qnoise::SplitMetrics metrics = task.evaluate(split);
  // The float32 sums of the same kernels in the same order: equal up to the last bits.
  EXPECT_NEAR(metrics.at("loss"), expected.loss, 1e-6 * expected.loss) << split;
  if (expected.accuracy >= 0) EXPECT_DOUBLE_EQ(metrics.at("accuracy"), expected.accuracy) << split;
}

void expect_file(const std::string& name, const std::string& data, const Expected& compressed_test,
                 const Expected& compressed_valid, const Expected& decoded_test, const Expected& decoded_valid) {
  // The numbers were printed with --threads 1: float sums split over threads differ in the last bits.
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  struct RestoreThreads {
    int n;
    ~RestoreThreads() { at::set_num_threads(n); }
  } restore{threads};
  const qnoise::CompressedModel file = qnoise::read_qnz(kLegacy + name);
  {
    const qnoise::RuntimeTask runtime = qnoise::load_runtime_task(file, data);
    EXPECT_FALSE(runtime.layers->layers().empty());
    expect_split(*runtime.task, "test", compressed_test);
    expect_split(*runtime.task, "valid", compressed_valid);
  }
  const auto decoded = qnoise::load_compressed_task(file, data);
  expect_split(*decoded, "test", decoded_test);
  expect_split(*decoded, "valid", decoded_valid);
}

// The KJV corpus the LM was trained on (`qnoise data kjv`), once per ctest run.
std::string kjv_data() {
  return qnoise::testing::shared_fixture(
      "kjv_wikitext", [](const std::string& dir) { qnoise::write_kjv_wikitext(qnoise::read_kjv_bible(), dir); });
}

}  // namespace

TEST(LegacyFiles, ImageClassifierWithIpqAndInt8ActivationsEvaluatesAsBefore) {
  expect_file("cnn_ipq_int8.qnz", "", {1.817473223876953, 0.3617}, {1.7871551513671875, 0.37109375},
              {1.8174732177734374, 0.3617}, {1.7871551513671875, 0.37109375});
}

TEST(LegacyFiles, Int4ImageClassifierEvaluatesAsBefore) {
  expect_file("cnn_int4.qnz", "", {1.668098895263672, 0.4431}, {1.6452450528740883, 0.41015625},
              {1.668098876953125, 0.4431}, {1.6452450528740883, 0.41015625});
}

TEST(LegacyFiles, IpqLanguageModelEvaluatesAndGeneratesAsBefore) {
  expect_file("lm_ipq.qnz", kjv_data(), {4.891333655674603, -1}, {4.93956068206329, -1}, {4.89133366720182, -1},
              {4.939560700784379, -1});
  const std::string expected =
      "and god said fathers taken . first that , other themselves thee mine thing took For people answered from";
  for (const char* weights : {"", " --decoded"}) {
    const auto run = qnoise::testing::run_qnoise("--threads 1 generate " + kLegacy +
                                                 "lm_ipq.qnz --prompt 'and god said' --tokens 16 --seed 7" + weights);
    EXPECT_EQ(run.exit_code, 0) << run.output;
    EXPECT_NE(run.output.find(expected), std::string::npos) << weights << ": " << run.output;
  }
}
