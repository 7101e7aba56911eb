#include "train/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace qnoise::detail {

namespace {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (s >= 3600)
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(text, sizeof text, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return text;
}

}  // namespace

ProgressDisplay::ProgressDisplay(ProgressOptions options, int64_t total_steps, std::string unit_name)
    : mode_(options.mode),
      line_interval_s_(options.line_interval_s),
      total_steps_(total_steps),
      unit_name_(std::move(unit_name)),
      started_(Clock::now()),
      last_print_(started_) {
  if (mode_ == ProgressOptions::Mode::Auto)
    mode_ = isatty(STDERR_FILENO) ? ProgressOptions::Mode::Bar : ProgressOptions::Mode::Lines;
}

void ProgressDisplay::update(int64_t step, double loss, int64_t units, double lr) {
  if (first_step_ < 0) first_step_ = step - 1;
  units_ += units;
  // Exponential moving average over about 50 steps: readable, yet follows the trend.
  smoothed_loss_ = has_loss_ ? 0.98 * smoothed_loss_ + 0.02 * loss : loss;
  has_loss_ = true;
  if (mode_ == ProgressOptions::Mode::Off) return;
  const auto now = Clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  const double interval = mode_ == ProgressOptions::Mode::Bar ? 0.25 : line_interval_s_;
  if (since < interval && step != total_steps_) return;
  last_print_ = now;
  print(step, lr);
}

void ProgressDisplay::print(int64_t step, double lr) {
  const double seconds = training_seconds();
  const double done = static_cast<double>(step - first_step_);
  const double speed = seconds > 0 ? units_ / seconds : 0;
  const double eta = done > 0 ? seconds / done * static_cast<double>(total_steps_ - step) : -1;
  char stats[200];
  std::snprintf(stats, sizeof stats, "step %lld/%lld  loss %.4f  lr %.2e  %.0f %s/s  elapsed %s  eta %s",
                static_cast<long long>(step), static_cast<long long>(total_steps_), smoothed_loss_, lr,
                speed, unit_name_.c_str(), format_duration(seconds).c_str(), format_duration(eta).c_str());
  if (mode_ == ProgressOptions::Mode::Bar) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * static_cast<double>(step) / std::max<int64_t>(1, total_steps_));
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r[%s] %s\033[K", bar.c_str(), stats);
    bar_open_ = true;
  } else {
    std::fprintf(stderr, "%s\n", stats);
  }
  std::fflush(stderr);
}

void ProgressDisplay::interrupt() {
  if (bar_open_) std::fprintf(stderr, "\n");
  bar_open_ = false;
}

void ProgressDisplay::pause() {
  if (!paused_) paused_at_ = Clock::now();
  paused_ = true;
}

void ProgressDisplay::resume() {
  if (paused_) paused_seconds_ += std::chrono::duration<double>(Clock::now() - paused_at_).count();
  paused_ = false;
}

double ProgressDisplay::training_seconds() const {
  const auto end = paused_ ? paused_at_ : Clock::now();
  return std::chrono::duration<double>(end - started_).count() - paused_seconds_;
}

}  // namespace qnoise::detail
