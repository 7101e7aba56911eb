// `qnoise train` as a user runs it: options, errors, and a run killed mid-way then resumed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "cli/run_qnoise.h"
#include "qnoise/checkpoint.h"
#include "qnoise/efficientnet.h"

namespace {

namespace fs = std::filesystem;
using qnoise::testing::contains;
using qnoise::testing::run_qnoise;

std::string temp_path(const std::string& name) { return ::testing::TempDir() + name; }

// Small-CNN run on 1024 Fashion-MNIST images: 3 epochs of 8 updates, with Quant-Noise.
const std::string kSmallRun =
    "--threads 1 train --task image --arch small-cnn --channels 8 --train-limit 1024 --valid-size 500 "
    "--epochs 3 --quant-noise-pq 0.1 --progress off";

// The parameters stored in a checkpoint of kSmallRun's model.
std::vector<torch::Tensor> checkpoint_parameters(const std::string& path) {
  qnoise::SmallCnn model(qnoise::SmallCnnOptions().channels(8));
  qnoise::load_checkpoint(path, *model, nullptr);
  return model->parameters();
}

void expect_same_checkpoint_weights(const std::string& a, const std::string& b) {
  const auto pa = checkpoint_parameters(a), pb = checkpoint_parameters(b);
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
}

}  // namespace

TEST(TrainCommand, PrintsOneJsonLinePerEpochAndWritesTheCheckpoint) {
  const auto out = temp_path("cli_whole.pt");
  fs::remove(out);
  const auto result = run_qnoise(kSmallRun + " --out " + out);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "\"event\":\"eval\",\"images_per_second\""));
  EXPECT_TRUE(contains(result.output, "\"step\":24,"));
  EXPECT_TRUE(contains(result.output, "finished at step 24"));
  EXPECT_TRUE(fs::exists(out));
}

TEST(TrainCommand, StopAfterThenResumeEqualsAnUninterruptedRun) {
  const auto whole = temp_path("cli_whole2.pt"), parts = temp_path("cli_parts.pt");
  fs::remove(whole);
  fs::remove(parts);
  ASSERT_EQ(run_qnoise(kSmallRun + " --out " + whole).exit_code, 0);
  const auto stopped = run_qnoise(kSmallRun + " --out " + parts + " --stop-after 11");
  ASSERT_EQ(stopped.exit_code, 0) << stopped.output;
  EXPECT_TRUE(contains(stopped.output, "stopped at step 11"));
  const auto resumed = run_qnoise(kSmallRun + " --out " + parts + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "resuming from")) << resumed.output;
  expect_same_checkpoint_weights(whole, parts);
}

TEST(TrainCommand, KilledMidRunThenResumedEqualsAnUninterruptedRun) {
  const auto whole = temp_path("cli_whole3.pt"), killed = temp_path("cli_killed.pt");
  fs::remove(whole);
  fs::remove(killed);
  ASSERT_EQ(run_qnoise(kSmallRun + " --out " + whole).exit_code, 0);

  // Checkpoint after every update, and SIGKILL the process once a checkpoint exists: whatever
  // update it dies in (even inside a checkpoint write), the last complete checkpoint resumes.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string command = std::string("exec ") + QNOISE_BINARY + " " + kSmallRun + " --out " + killed +
                                " --save-every 1 >/dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(killed) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // a few more updates
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(fs::exists(killed)) << "no checkpoint was written before the deadline";
  qnoise::SmallCnn probe(qnoise::SmallCnnOptions().channels(8));
  EXPECT_LT(qnoise::load_checkpoint(killed, *probe, nullptr).step, 24) << "the run ended before it was killed";

  const auto resumed = run_qnoise(kSmallRun + " --out " + killed + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "finished at step 24")) << resumed.output;
  expect_same_checkpoint_weights(whole, killed);
}

TEST(TrainCommand, BadOptionsAreClearErrors) {
  const auto out = temp_path("cli_bad.pt");
  fs::remove(out);
  const std::vector<std::pair<std::string, std::string>> cases = {  // arguments, expected message
      {"--task image --seq-len 64", "image task has no option 'seq_len'"},
      {"--task image --quant-noise-pq 0.1 --quant-noise-scalar 0.5 --train-limit 64", "not both"},
      {"--task lm --data /nonexistent/corpus", "/nonexistent/corpus"},
      {"--task image --batch-size many", "--batch-size: cannot read 'many'"},
      {"--task image --lr fast", "--lr: cannot read 'fast'"},
      {"--task image --quant-noise-pq 0.1 --quant-noise-layers 'nothing*' --train-limit 64", "nothing*"},
      {"--task image --quant-noise-layers 'conv*' --train-limit 64", "needs a noise rate"},
      {"", "--task is required"},
      {"--task image --dropout nan", "--dropout: cannot read 'nan' as a finite number"},
      {"--task image --lr inf", "--lr: cannot read 'inf' as a finite number"},
      {"--task image --epochs 1e30", "--epochs: '1e30' is not an integer (or is beyond 2^53)"},
      {"--task image --quant-noise-scalar 0.5 --bits 4294967304", "--bits must be in 2..8, got 4294967304"},
  };
  for (const auto& [arguments, message] : cases) {
    const auto result = run_qnoise("train " + arguments + " --out " + out);
    EXPECT_EQ(result.exit_code, 1) << arguments;
    EXPECT_TRUE(contains(result.output, message)) << arguments << "\n" << result.output;
  }
  EXPECT_NE(run_qnoise("train --task image --out " + out + " --no-such-option").exit_code, 0);
  EXPECT_FALSE(fs::exists(out));
}

TEST(TrainCommand, ResumeRefusesOtherSettingsButMayRunLonger) {
  const auto out = temp_path("cli_settings.pt");
  fs::remove(out);
  ASSERT_EQ(run_qnoise(kSmallRun + " --out " + out + " --stop-after 4").exit_code, 0);
  const auto other_lr = run_qnoise(kSmallRun + " --out " + out + " --resume --lr 0.002");
  EXPECT_EQ(other_lr.exit_code, 1);
  EXPECT_TRUE(contains(other_lr.output, "trained with other settings (/optimizer/lr was 0.004, now 0.002)"))
      << other_lr.output;
  const auto other_optimizer = run_qnoise(kSmallRun + " --out " + out + " --resume --optimizer sgd");
  EXPECT_EQ(other_optimizer.exit_code, 1);
  EXPECT_TRUE(contains(other_optimizer.output, "/optimizer/kind was")) << other_optimizer.output;
  const auto other_clip = run_qnoise(kSmallRun + " --out " + out + " --resume --clip-norm 0.5");
  EXPECT_TRUE(contains(other_clip.output, "/clip_norm was 0.0, now 0.5")) << other_clip.output;
  // Running longer (--epochs) is allowed; resuming the finished run prints its result again.
  const auto longer = run_qnoise(kSmallRun + " --out " + out + " --resume --max-steps 10");
  ASSERT_EQ(longer.exit_code, 0) << longer.output;
  EXPECT_TRUE(contains(longer.output, "finished at step 10")) << longer.output;
  const auto again = run_qnoise(kSmallRun + " --out " + out + " --resume --max-steps 10");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_TRUE(contains(again.output, "\"event\":\"eval\"") && contains(again.output, "\"step\":10,")) << again.output;
}

TEST(TrainCommand, ExactNoiseResumedBetweenRefreshesEqualsAnUninterruptedRun) {
  // Codebooks relearned every 4 updates; stopped at update 6, they come back from the checkpoint.
  const std::string run = kSmallRun + " --pq-noise exact --codebook-refresh 4 --max-steps 10";
  const auto whole = temp_path("cli_exact_whole.pt"), parts = temp_path("cli_exact_parts.pt");
  fs::remove(whole);
  fs::remove(parts);
  ASSERT_EQ(run_qnoise(run + " --out " + whole).exit_code, 0);
  ASSERT_EQ(run_qnoise(run + " --out " + parts + " --stop-after 6").exit_code, 0);
  const auto resumed = run_qnoise(run + " --out " + parts + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  expect_same_checkpoint_weights(whole, parts);
}

TEST(TrainCommand, AnOutFolderThatCannotBeWrittenFailsBeforeTraining) {
  const auto result = run_qnoise(kSmallRun + " --out /nonexistent/folder/model.pt");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(contains(result.output, "its folder '/nonexistent/folder' does not exist")) << result.output;
  EXPECT_FALSE(contains(result.output, "\"event\"")) << "no training before the check";
}
