#pragma once
// Learning-rate schedules as pure functions of the step, so a resumed run needs only the step.
#include <cstdint>
#include <string>

namespace qnoise {

enum class LrScheduleKind {
  Constant,     // peak_lr after the warm-up
  InverseSqrt,  // fairseq's inverse_sqrt: peak_lr * sqrt(warmup_steps / step) after the warm-up
  Cosine,       // cosine decay from peak_lr to min_lr over total_steps, after the warm-up
};

struct LrScheduleOptions {
  LrScheduleKind kind = LrScheduleKind::Constant;
  double peak_lr = 1e-3;
  int64_t warmup_steps = 0;  // linear warm-up from warmup_init_lr to peak_lr
  double warmup_init_lr = 0.0;
  int64_t total_steps = 0;  // Cosine only: the step at which min_lr is reached
  double min_lr = 0.0;
};

// The rate to use for update number `step` (0-based). Throws qnoise::Error on inconsistent
// options (negative rates or steps, Cosine without total_steps > warmup_steps).
double learning_rate(const LrScheduleOptions& options, int64_t step);

// "constant", "inverse-sqrt" or "cosine"; fairseq's "fixed" (constant) and "inverse_sqrt" too.
LrScheduleKind parse_lr_schedule(const std::string& name);

}  // namespace qnoise
