// openmp_workers_spin() reads libgomp's waiting from the environment as libgomp does: a spin count
// other than 0 spins whatever the policy; without one, only the passive policy sleeps at once.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

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

bool spins(std::optional<std::string> policy, std::optional<std::string> count) {
  ScopedEnv p("OMP_WAIT_POLICY", std::move(policy));
  ScopedEnv c("GOMP_SPINCOUNT", std::move(count));
  return qnoise::openmp_workers_spin();
}

}  // namespace

TEST(ProcessTuning, OpenMpWorkersSpinUnlessPassiveWithoutASpinCount) {
  EXPECT_FALSE(spins("passive", std::nullopt));
  EXPECT_FALSE(spins("PASSIVE", "0"));
  EXPECT_TRUE(spins("passive", "20000"));  // BriefSpin: the count overrides the policy
  EXPECT_TRUE(spins("passive", "10k"));
  EXPECT_TRUE(spins("active", std::nullopt));
  EXPECT_TRUE(spins("Active", std::nullopt));
  EXPECT_TRUE(spins(std::nullopt, std::nullopt));  // libgomp's default spins 300,000 times
  EXPECT_FALSE(spins(std::nullopt, "0"));
}
