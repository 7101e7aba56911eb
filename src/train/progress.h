#pragma once
// Training progress on stderr: a bar redrawn in place on a terminal, or a plain line every few
// seconds when the output goes to a file or CI log (where \r redraws would make a mess).
#include <chrono>
#include <cstdint>
#include <string>

#include "qnoise/trainer.h"

namespace qnoise::detail {

class ProgressDisplay {
 public:
  ProgressDisplay(ProgressOptions options, int64_t total_steps, std::string unit_name);
  // After update `step` (1-based) with this batch's loss and units.
  void update(int64_t step, double loss, int64_t units, double lr);
  // Ends a bar's line before other output (an evaluation line).
  void interrupt();
  // Time spent training since construction, evaluation excluded (pause/resume around it).
  void pause();
  void resume();
  double training_seconds() const;
  int64_t units() const { return units_; }

 private:
  using Clock = std::chrono::steady_clock;
  void print(int64_t step, double lr);

  ProgressOptions::Mode mode_;
  double line_interval_s_;
  int64_t total_steps_;
  std::string unit_name_;
  int64_t first_step_ = -1;  // the step this run started from (resumed runs start late)
  int64_t units_ = 0;
  double smoothed_loss_ = 0;
  bool has_loss_ = false, bar_open_ = false, paused_ = false;
  Clock::time_point started_, paused_at_, last_print_;
  double paused_seconds_ = 0;
};

}  // namespace qnoise::detail
