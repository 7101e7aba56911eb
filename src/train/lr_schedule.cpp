#include "qnoise/lr_schedule.h"

#include <cmath>

#include "qnoise/error.h"

namespace qnoise {

double learning_rate(const LrScheduleOptions& options, int64_t step) {
  QNOISE_CHECK(step >= 0, "learning-rate step must be >= 0, got ", step);
  QNOISE_CHECK(options.peak_lr >= 0 && options.warmup_init_lr >= 0 && options.min_lr >= 0,
               "learning rates must be >= 0");
  QNOISE_CHECK(options.warmup_steps >= 0, "warm-up steps must be >= 0, got ", options.warmup_steps);
  if (step < options.warmup_steps) {
    const double progress = static_cast<double>(step) / options.warmup_steps;
    return options.warmup_init_lr + (options.peak_lr - options.warmup_init_lr) * progress;
  }
  switch (options.kind) {
    case LrScheduleKind::Constant:
      return options.peak_lr;
    case LrScheduleKind::InverseSqrt:
      if (options.warmup_steps == 0) return options.peak_lr / std::sqrt(static_cast<double>(step + 1));
      return options.peak_lr * std::sqrt(static_cast<double>(options.warmup_steps) / std::max<int64_t>(step, 1));
    case LrScheduleKind::Cosine: {
      QNOISE_CHECK(options.total_steps > options.warmup_steps, "the cosine schedule needs total_steps (",
                   options.total_steps, ") > warmup_steps (", options.warmup_steps, ")");
      const double progress = std::min(
          1.0, static_cast<double>(step - options.warmup_steps) / (options.total_steps - options.warmup_steps));
      return options.min_lr + 0.5 * (options.peak_lr - options.min_lr) * (1.0 + std::cos(M_PI * progress));
    }
  }
  return options.peak_lr;
}

LrScheduleKind parse_lr_schedule(const std::string& name) {
  // fairseq's names too (--lr-scheduler): inverse_sqrt, and fixed for a constant rate.
  if (name == "constant" || name == "fixed") return LrScheduleKind::Constant;
  if (name == "inverse-sqrt" || name == "inverse_sqrt") return LrScheduleKind::InverseSqrt;
  if (name == "cosine") return LrScheduleKind::Cosine;
  throw Error("unknown learning-rate schedule '" + name +
              "' (expected constant, inverse-sqrt or cosine; fairseq's fixed and inverse_sqrt are read as well)");
}

}  // namespace qnoise
