// Drawing tokens from log-probabilities: greedy, top-k, temperature, and the seed.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "qnoise/error.h"
#include "qnoise/text_generation.h"

TEST(TextGeneration, GreedyAndTopOneTakeTheMostProbableTokenLowestIdOnTies) {
  const auto log_probs = torch::log(torch::tensor({0.1, 0.4, 0.1, 0.4}, torch::kFloat));
  std::mt19937_64 rng(1);
  EXPECT_EQ(qnoise::sample_token(log_probs, {0.0, 0}, rng), 1);
  for (int i = 0; i < 20; ++i) {
    const auto token = qnoise::sample_token(log_probs, {1.0, 2}, rng);
    EXPECT_TRUE(token == 1 || token == 3) << token;
  }
}

TEST(TextGeneration, SamplingFollowsTheDistributionAndTheSeed) {
  const auto log_probs = torch::log(torch::tensor({0.2, 0.5, 0.3}, torch::kFloat));
  std::mt19937_64 rng(5);
  std::vector<int> counts(3, 0);
  std::vector<int64_t> first;
  constexpr int kDraws = 20000;
  for (int i = 0; i < kDraws; ++i) {
    const auto token = qnoise::sample_token(log_probs, {1.0, 0}, rng);
    ++counts[token];
    if (i < 50) first.push_back(token);
  }
  EXPECT_NEAR(counts[0] / double(kDraws), 0.2, 0.015);
  EXPECT_NEAR(counts[1] / double(kDraws), 0.5, 0.015);
  // A low temperature sharpens: 0.5 / 0.3 becomes (5/3)^10 = 165 to 1.
  std::vector<int> sharp(3, 0);
  for (int i = 0; i < 2000; ++i) ++sharp[qnoise::sample_token(log_probs, {0.1, 0}, rng)];
  EXPECT_GT(sharp[1], 1960);
  std::mt19937_64 again(5);
  for (int64_t token : first) EXPECT_EQ(qnoise::sample_token(log_probs, {1.0, 0}, again), token);
  EXPECT_THROW(qnoise::sample_token(log_probs, {-1.0, 0}, rng), qnoise::Error);
  EXPECT_THROW(qnoise::sample_token(log_probs, {1.0, -2}, rng), qnoise::Error);
}
