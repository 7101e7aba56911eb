// packed_workers_spin() reads QNOISE_WORKER_WAIT: spin or sleep (the default), anything else named
// in an error; tune_process(BriefSpin) sets it to spin unless the user chose.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "qnoise/error.h"
#include "qnoise/process_tuning.h"

namespace {

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

bool spins(std::optional<std::string> wait) {
  ScopedEnv w("QNOISE_WORKER_WAIT", std::move(wait));
  return qnoise::packed_workers_spin();
}

}  // namespace

TEST(ProcessTuning, PackedWorkersSpinOnlyWhenAskedTo) {
  EXPECT_TRUE(spins("spin"));
  EXPECT_FALSE(spins("sleep"));
  EXPECT_FALSE(spins(std::nullopt));
  EXPECT_FALSE(spins(""));
  try {
    spins("active");
    FAIL() << "an unknown value was accepted";
  } catch (const qnoise::Error& e) {
    EXPECT_NE(std::string(e.what()).find("QNOISE_WORKER_WAIT='active'"), std::string::npos) << e.what();
  }
}

TEST(ProcessTuning, BriefSpinAsksForSpinningWorkersUnlessTheUserChose) {
  // OMP_WAIT_POLICY set: tune_process does not restart the program.
  ScopedEnv policy("OMP_WAIT_POLICY", "passive");
  char* argv[] = {nullptr};
  {
    ScopedEnv wait("QNOISE_WORKER_WAIT", std::nullopt);
    qnoise::tune_process(argv, qnoise::ThreadWaiting::BriefSpin);
    EXPECT_TRUE(qnoise::packed_workers_spin());
  }
  {
    ScopedEnv wait("QNOISE_WORKER_WAIT", "sleep");
    qnoise::tune_process(argv, qnoise::ThreadWaiting::BriefSpin);
    EXPECT_FALSE(qnoise::packed_workers_spin());
  }
  {
    ScopedEnv wait("QNOISE_WORKER_WAIT", std::nullopt);
    qnoise::tune_process(argv, qnoise::ThreadWaiting::Passive);
    EXPECT_FALSE(qnoise::packed_workers_spin());
    qnoise::ask_for_spinning_workers();  // what `qnoise generate` adds after parsing
    EXPECT_TRUE(qnoise::packed_workers_spin());
  }
}
