// runtime_options_from_environment reads QNOISE_WORKER_WAIT (spin or sleep; unset: spin only for
// ThreadWaiting::BriefSpin), QNOISE_ACTIVATIONS and QNOISE_KERNELS, and names a variable with any
// other value in an error; tune_process leaves a process whose OpenMP wait policy is set running.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

#include "cli/run_qnoise.h"
#include "qnoise/error.h"
#include "qnoise/kernel_path.h"
#include "qnoise/process_tuning.h"
#include "qnoise/runtime_options.h"

namespace {

using qnoise::ThreadWaiting;

// Sets (or, with nullopt, removes) an environment variable for the scope, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) setenv(name, value->c_str(), 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// The options with the three variables set as given (nullopt: unset) and nothing else changed.
qnoise::RuntimeOptions options_from(std::optional<std::string> wait, ThreadWaiting waiting = ThreadWaiting::Passive,
                                    std::optional<std::string> kernels = std::nullopt,
                                    std::optional<std::string> activations = std::nullopt) {
  ScopedEnv k("QNOISE_KERNELS", std::move(kernels));
  ScopedEnv a("QNOISE_ACTIVATIONS", std::move(activations));
  ScopedEnv w("QNOISE_WORKER_WAIT", std::move(wait));
  return qnoise::runtime_options_from_environment(waiting);
}

bool spins(std::optional<std::string> wait, ThreadWaiting waiting = ThreadWaiting::Passive) {
  return options_from(std::move(wait), waiting).tuning.spinning_workers;
}

// Runs `make` and expects a qnoise::Error whose message contains `part`.
template <typename Make>
void expect_error(const Make& make, const std::string& part) {
  try {
    make();
    ADD_FAILURE() << "no qnoise::Error, expected one mentioning " << part;
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(ProcessTuning, PackedWorkersSpinOnlyWhenAskedTo) {
  EXPECT_TRUE(spins("spin"));
  EXPECT_FALSE(spins("sleep"));
  EXPECT_FALSE(spins(std::nullopt));
  EXPECT_FALSE(spins(""));
  expect_error([] { spins("active"); }, "QNOISE_WORKER_WAIT='active'");
}

TEST(ProcessTuning, BriefSpinAsksForSpinningWorkersUnlessTheUserChose) {
  EXPECT_TRUE(spins(std::nullopt, ThreadWaiting::BriefSpin));
  EXPECT_FALSE(spins("sleep", ThreadWaiting::BriefSpin));
  EXPECT_TRUE(spins("spin", ThreadWaiting::BriefSpin));
  expect_error([] { spins("active", ThreadWaiting::BriefSpin); }, "QNOISE_WORKER_WAIT='active'");
}

TEST(ProcessTuning, SpinningWorkersSplitSmallerLayers) {
  // LinearTuning::use_spinning_workers: handing out work is cheap, so smaller layers use threads.
  EXPECT_EQ(options_from("spin").tuning.min_work_per_thread, int64_t{1} << 17);
  EXPECT_EQ(options_from("sleep").tuning.min_work_per_thread, qnoise::LinearTuning{}.min_work_per_thread);
}

TEST(ProcessTuning, ActivationsAndKernelsComeFromTheEnvironment) {
  EXPECT_FALSE(options_from(std::nullopt).int8_activations);
  EXPECT_TRUE(options_from(std::nullopt, ThreadWaiting::Passive, std::nullopt, "int8").int8_activations);
  EXPECT_FALSE(options_from(std::nullopt, ThreadWaiting::Passive, std::nullopt, "float").int8_activations);
  expect_error([] { options_from(std::nullopt, ThreadWaiting::Passive, std::nullopt, "int7"); },
               "QNOISE_ACTIVATIONS='int7'");
  EXPECT_EQ(options_from(std::nullopt, ThreadWaiting::Passive, "reference").kernel_path, qnoise::KernelPath::Reference);
  expect_error([] { options_from(std::nullopt, ThreadWaiting::Passive, "bogus"); }, "QNOISE_KERNELS='bogus'");
}

TEST(ProcessTuning, TuneProcessLeavesASetWaitPolicyAlone) {
  // OMP_WAIT_POLICY set: tune_process does not restart the program, and returns.
  ScopedEnv policy("OMP_WAIT_POLICY", "passive");
  char* argv[] = {nullptr};
  qnoise::tune_process(argv);
  ASSERT_NE(std::getenv("OMP_WAIT_POLICY"), nullptr);
  EXPECT_EQ(std::string(std::getenv("OMP_WAIT_POLICY")), "passive");
}

TEST(ProcessTuning, TheProgramStartsPassiveWithoutRestarting) {
  // libgomp prints its settings as it loads (OMP_DISPLAY_ENV): once per start of the program, so
  // a restart would print them twice.
  const auto count = [](const std::string& text, const std::string& part) {
    size_t n = 0;
    for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
    return n;
  };
  const auto unset = qnoise::testing::run_qnoise("--version", "-u OMP_WAIT_POLICY OMP_DISPLAY_ENV=verbose");
  ASSERT_EQ(unset.exit_code, 0) << unset.output;
  EXPECT_EQ(count(unset.output, "OPENMP DISPLAY ENVIRONMENT BEGIN"), 1u) << unset.output;
  EXPECT_TRUE(qnoise::testing::contains(unset.output, "OMP_WAIT_POLICY = 'PASSIVE'")) << unset.output;
  EXPECT_TRUE(qnoise::testing::contains(unset.output, "GOMP_SPINCOUNT = '0'")) << unset.output;
  // A policy the user chose is kept.
  const auto active = qnoise::testing::run_qnoise("--version", "OMP_WAIT_POLICY=active OMP_DISPLAY_ENV=true");
  EXPECT_EQ(count(active.output, "OPENMP DISPLAY ENVIRONMENT BEGIN"), 1u) << active.output;
  EXPECT_TRUE(qnoise::testing::contains(active.output, "OMP_WAIT_POLICY = 'ACTIVE'")) << active.output;
}
