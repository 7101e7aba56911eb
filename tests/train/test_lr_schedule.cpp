#include <gtest/gtest.h>

#include <cmath>

#include "qnoise/error.h"
#include "qnoise/lr_schedule.h"
#include "qnoise/optimizer.h"

using qnoise::LrScheduleKind;
using qnoise::LrScheduleOptions;

TEST(LrSchedule, WarmupIsLinearThenInverseSqrtDecays) {
  LrScheduleOptions options;
  options.kind = LrScheduleKind::InverseSqrt;
  options.peak_lr = 1e-3;
  options.warmup_steps = 100;
  options.warmup_init_lr = 1e-7;
  EXPECT_DOUBLE_EQ(qnoise::learning_rate(options, 0), 1e-7);
  EXPECT_DOUBLE_EQ(qnoise::learning_rate(options, 50), 1e-7 + (1e-3 - 1e-7) * 0.5);
  EXPECT_DOUBLE_EQ(qnoise::learning_rate(options, 100), 1e-3);
  EXPECT_DOUBLE_EQ(qnoise::learning_rate(options, 400), 1e-3 * 0.5);  // sqrt(100 / 400)
}

TEST(LrSchedule, InverseSqrtIsFairseqsInverseSqrt) {
  // fairseq's inverse_sqrt (--lr-scheduler inverse_sqrt): update k (0-based) gets
  // warmup_init_lr + k * (lr - warmup_init_lr) / warmup_updates during the warm-up, then
  // lr * sqrt(warmup_updates) / sqrt(k).
  LrScheduleOptions options;
  options.kind = LrScheduleKind::InverseSqrt;
  options.peak_lr = 5e-4;
  options.warmup_steps = 4000;
  options.warmup_init_lr = 1e-7;
  const double lr_step = (5e-4 - 1e-7) / 4000, decay_factor = 5e-4 * std::sqrt(4000.0);
  for (int64_t k : {0, 1, 1999, 3999}) EXPECT_NEAR(qnoise::learning_rate(options, k), 1e-7 + k * lr_step, 1e-15) << k;
  for (int64_t k : {4000, 4001, 16000, 100000})
    EXPECT_NEAR(qnoise::learning_rate(options, k), decay_factor / std::sqrt(static_cast<double>(k)), 1e-15) << k;
}

TEST(LrSchedule, CosineGoesFromPeakToMinimum) {
  LrScheduleOptions options;
  options.kind = LrScheduleKind::Cosine;
  options.peak_lr = 0.1;
  options.min_lr = 0.001;
  options.warmup_steps = 10;
  options.total_steps = 110;
  EXPECT_DOUBLE_EQ(qnoise::learning_rate(options, 10), 0.1);
  EXPECT_NEAR(qnoise::learning_rate(options, 60), 0.001 + 0.5 * 0.099, 1e-12);  // half way
  EXPECT_DOUBLE_EQ(qnoise::learning_rate(options, 110), 0.001);
  EXPECT_DOUBLE_EQ(qnoise::learning_rate(options, 500), 0.001);
  options.total_steps = 5;
  EXPECT_THROW(qnoise::learning_rate(options, 20), qnoise::Error);
}

TEST(LrSchedule, NamesAreParsedAndUnknownOnesRejected) {
  EXPECT_EQ(qnoise::parse_lr_schedule("cosine"), LrScheduleKind::Cosine);
  EXPECT_EQ(qnoise::parse_lr_schedule("inverse-sqrt"), LrScheduleKind::InverseSqrt);
  EXPECT_EQ(qnoise::parse_lr_schedule("constant"), LrScheduleKind::Constant);
  // fairseq's --lr-scheduler names.
  EXPECT_EQ(qnoise::parse_lr_schedule("inverse_sqrt"), LrScheduleKind::InverseSqrt);
  EXPECT_EQ(qnoise::parse_lr_schedule("fixed"), LrScheduleKind::Constant);
  EXPECT_THROW(qnoise::parse_lr_schedule("linear-ish"), qnoise::Error);
  EXPECT_THROW(qnoise::parse_lr_schedule("polynomial_decay"), qnoise::Error);
  EXPECT_EQ(qnoise::parse_optimizer("sgd"), qnoise::OptimizerKind::SGD);
  EXPECT_THROW(qnoise::parse_optimizer("lamb"), qnoise::Error);
}
