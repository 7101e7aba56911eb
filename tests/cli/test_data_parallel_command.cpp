// `qnoise train` and `qnoise quantize` on several ranks (loopback): the same result as one process
// with the whole batch, failures that stop every rank with a message naming the rank, resume with
// another number of ranks.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli/run_qnoise.h"
#include "qnoise/compression_pipeline.h"
#include "qnoise/qnz_file.h"
#include "qnoise/trainer.h"
#include "train/small_qnz_models.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using qnoise::testing::contains;
using qnoise::testing::run_qnoise;

std::string temp_path(const std::string& name) {
  return (fs::path(::testing::TempDir()) / ("qnoise_dp_" + std::to_string(getpid()) + "_" + name)).string();
}

// The last JSON line of a command's output.
nlohmann::json last_json_line(const std::string& output) {
  std::istringstream lines(output);
  nlohmann::json last;
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line.front() == '{') last = nlohmann::json::parse(line);
  return last;
}

// The largest difference between the parameters of two training checkpoints of one model.
double max_parameter_difference(const std::string& a, const std::string& b) {
  auto first = qnoise::load_trained_task(a), second = qnoise::load_trained_task(b);
  const auto pa = first->model().named_parameters(), pb = second->model().named_parameters();
  double worst = 0;
  for (const auto& item : pa) worst = std::max(worst, (item.value() - pb[item.key()]).abs().max().item<double>());
  return worst;
}

void expect_same_metrics(const nlohmann::json& one, const nlohmann::json& two, const std::string& metric) {
  for (const char* split : {"valid", "test"}) {
    if (!one.contains(split)) continue;
    EXPECT_NEAR(one[split]["loss"].get<double>(), two[split]["loss"].get<double>(), 1e-5) << split;
    EXPECT_NEAR(one[split][metric].get<double>(), two[split][metric].get<double>(), 1e-5) << split;
  }
}

const std::string kImageData =
    "train --task image --arch small-cnn --channels 8 --train-limit 1024 --valid-size 500 --dropout 0 --no-augment "
    "--progress off";
const std::string kImage = kImageData + " --batch-size 64 --max-steps 6 --eval-every 3";

// A rank started in the background, its output in `log`.
pid_t start_rank(const std::string& arguments, const std::string& log) {
  const std::string command = std::string("exec ") + QNOISE_BINARY + " " + arguments + " >" + log + " 2>&1";
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  return pid;
}

std::string read_file(const std::string& path) {
  std::ifstream file(path);
  return std::string(std::istreambuf_iterator<char>(file), {});
}

}  // namespace

TEST(DataParallelCommand, TwoRanksGiveTheWeightsOfOneProcessWithTheWholeBatch) {
  for (const std::string noise : {"", " --quant-noise-pq 0.2"}) {
    const std::string one = temp_path("image_one.pt"), two = temp_path("image_two.pt");
    const auto single = run_qnoise(kImage + noise + " --out " + one);
    ASSERT_EQ(single.exit_code, 0) << single.output;
    const auto ranks = run_qnoise(kImage + noise + " --out " + two + " --nproc-per-node 2");
    ASSERT_EQ(ranks.exit_code, 0) << ranks.output;
    EXPECT_LT(max_parameter_difference(one, two), 2e-5) << noise;
    expect_same_metrics(last_json_line(single.output), last_json_line(ranks.output), "accuracy");
    EXPECT_EQ(last_json_line(ranks.output)["ranks"], 2);
  }
  // Each rank drawing its own masks is another run.
  const std::string one = temp_path("image_one.pt"), two = temp_path("image_per_rank.pt");
  ASSERT_EQ(run_qnoise(kImage + " --quant-noise-pq 0.2 --out " + two + " --nproc-per-node 2 --noise-per-rank").exit_code, 0);
  EXPECT_GT(max_parameter_difference(one, two), 1e-4);
}

TEST(DataParallelCommand, LanguageModelTwoRanksMatchOneProcess) {
  const std::string data = qnoise::testing::write_tiny_wikitext("dp_lm_data");
  const std::string lm = "train --task lm --data " + data +
                         " --d-model 16 --heads 2 --ffn-dim 32 --layers 2 --seq-len 16 --batch-size 4 --dropout 0 "
                         "--attention-dropout 0 --max-steps 4 --eval-every 2 --progress off --quant-noise-pq 0.1 "
                         // SGD: Adam divides by the gradients' own size, so embedding rows with gradients
                         // near zero turn summation-order differences of 1e-9 into steps of 1e-4.
                         "--optimizer sgd --lr 0.1";
  const std::string one = temp_path("lm_one.pt"), two = temp_path("lm_two.pt");
  const auto single = run_qnoise(lm + " --out " + one);
  ASSERT_EQ(single.exit_code, 0) << single.output;
  const auto ranks = run_qnoise(lm + " --out " + two + " --nproc-per-node 2");
  ASSERT_EQ(ranks.exit_code, 0) << ranks.output;
  EXPECT_LT(max_parameter_difference(one, two), 2e-5);
  expect_same_metrics(last_json_line(single.output), last_json_line(ranks.output), "ppl");
}

TEST(DataParallelCommand, AKilledRankStopsTheOtherNamingItAndResumeWorksOnOneOrTwoRanks) {
  const std::string out = temp_path("killed.pt"), log0 = temp_path("rank0.log"), log1 = temp_path("rank1.log");
  fs::remove(out);
  const std::string run = "--threads 1 train --task image --arch small-cnn --channels 8 --train-limit 2048 "
                          "--valid-size 500 --batch-size 32 --max-steps 100000 --eval-every 10 --dropout 0 "
                          "--no-augment --progress off --dist-timeout 60 --world-size 2 --master-port " +
                          std::to_string(21000 + getpid() % 20000) + " --out " + out;
  const pid_t rank0 = start_rank(run + " --rank 0", log0);
  const pid_t rank1 = start_rank(run + " --rank 1", log1);
  for (int i = 0; i < 600 && !fs::exists(out); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fs::exists(out)) << read_file(log0);
  kill(rank1, SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  int status = 0;
  waitpid(rank1, &status, 0);
  waitpid(rank0, &status, 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << read_file(log0);
  EXPECT_LT(seconds, 30) << "well within the 60 s timeout";
  EXPECT_TRUE(contains(read_file(log0), "rank 1 stopped")) << read_file(log0);

  // The checkpoint rank 0 wrote resumes on one rank and on two, to the same result.
  const std::string copy = temp_path("killed_copy.pt");
  fs::copy_file(out, copy, fs::copy_options::overwrite_existing);
  const std::string resume = "train --task image --arch small-cnn --channels 8 --train-limit 2048 --valid-size 500 "
                             "--batch-size 32 --max-steps 200 --eval-every 10 --dropout 0 --no-augment --progress off "
                             "--resume --out ";
  const auto alone = run_qnoise(resume + out);
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  EXPECT_TRUE(contains(alone.output, "resuming from")) << alone.output;
  const auto pair = run_qnoise(resume + copy + " --nproc-per-node 2");
  ASSERT_EQ(pair.exit_code, 0) << pair.output;
  EXPECT_LT(max_parameter_difference(out, copy), 2e-5);
  expect_same_metrics(last_json_line(alone.output), last_json_line(pair.output), "accuracy");
}

TEST(DataParallelCommand, IpqOnTwoRanksEvaluatesLikeOneRank) {
  const std::string model = temp_path("ipq_model.pt");
  ASSERT_EQ(run_qnoise(kImageData + " --batch-size 64 --max-steps 20 --out " + model).exit_code, 0);
  const std::string quantize = "quantize --model " + model + " --finetune-steps 4 --progress off --out ";
  const std::string one = temp_path("one.qnz"), two = temp_path("two.qnz");
  const auto single = run_qnoise(quantize + one);
  ASSERT_EQ(single.exit_code, 0) << single.output;
  const auto ranks = run_qnoise(quantize + two + " --nproc-per-node 2");
  ASSERT_EQ(ranks.exit_code, 0) << ranks.output;
  const auto a = last_json_line(single.output)["compressed"], b = last_json_line(ranks.output)["compressed"];
  EXPECT_NEAR(a["test"]["accuracy"].get<double>(), b["test"]["accuracy"].get<double>(), 0.01);
  EXPECT_NEAR(a["test"]["loss"].get<double>(), b["test"]["loss"].get<double>(), 0.02 * a["test"]["loss"].get<double>());
  EXPECT_EQ(qnoise::read_qnz(two).tensors.size(), qnoise::read_qnz(one).tensors.size());
}

TEST(DataParallelCommand, MisconfiguredRanksAreClearErrors) {
  const std::string port = std::to_string(22000 + getpid() % 20000);
  const std::string base = kImage + " --out " + temp_path("bad.pt") + " --world-size 2 --dist-timeout 10 --master-port " + port;
  // Two ranks with different learning rates: both stop, naming the first difference.
  const pid_t other = start_rank(base + " --rank 1 --lr 0.002", temp_path("bad1.log"));
  const auto rank0 = run_qnoise(base + " --rank 0");
  int status = 0;
  waitpid(other, &status, 0);
  EXPECT_EQ(rank0.exit_code, 1);
  EXPECT_TRUE(contains(rank0.output, "rank 1 was started with other settings than rank 0")) << rank0.output;
  EXPECT_TRUE(contains(read_file(temp_path("bad1.log")), "/trainer/optimizer/lr: rank 0 has 0.004, rank 1 has 0.002")) << read_file(temp_path("bad1.log"));
  // Options that cannot make a run.
  EXPECT_TRUE(contains(run_qnoise(kImage + " --out x.pt --world-size 2").output, "needs this process's rank"));
  EXPECT_TRUE(contains(run_qnoise(kImage + " --out x.pt --world-size 2 --rank 2").output, "rank 2 is outside 0..1"));
  EXPECT_TRUE(contains(run_qnoise(kImage + " --out x.pt --nproc-per-node 2 --rank 0").output,
                       "--nproc-per-node starts every rank itself"));
  const auto big = run_qnoise(kImageData + " --out x.pt --batch-size 1 --max-steps 2 --nproc-per-node 2");
  EXPECT_EQ(big.exit_code, 1);
  EXPECT_TRUE(contains(big.output, "cannot be split over 2 ranks")) << big.output;
}
