#pragma once
// A Google Benchmark console reporter that also remembers each benchmark's median real time, so
// a program can print ratios measured side by side in one run (run with repetitions).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>

namespace qnoise::bench {

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs)
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median")
        medians_[run.run_name.function_name + (run.run_name.args.empty() ? "" : "/" + run.run_name.args)] =
            run.GetAdjustedRealTime();
  }

  // Median real time of a benchmark (name as registered, with its arguments), in the time unit
  // it reports; negative when it did not run.
  double median(const std::string& name) const {
    auto found = medians_.find(name);
    return found == medians_.end() ? -1.0 : found->second;
  }

  // Prints "label: numerator / denominator = ratio (target ...)" and whether the target holds.
  void print_ratio(const std::string& label, const std::string& numerator,
                   const std::string& denominator, double target_max) const {
    const double top = median(numerator), bottom = median(denominator);
    if (top < 0 || bottom <= 0) {
      std::printf("%-44s not measured (filtered out?)\n", label.c_str());
      return;
    }
    const double ratio = top / bottom;
    std::printf("%-44s %8.3f   (target <= %.2f: %s)\n", label.c_str(), ratio, target_max,
                ratio <= target_max ? "met" : "MISSED");
  }

 private:
  std::map<std::string, double> medians_;
};

// Runs the registered benchmarks with `repetitions` interleaved repetitions unless the command
// line says otherwise, and returns the reporter for the caller to print ratios.
inline void run_with_repetitions(int argc, char** argv, RatioReporter& reporter, int repetitions) {
  std::vector<char*> args(argv, argv + argc);
  std::string repeat_flag = "--benchmark_repetitions=" + std::to_string(repetitions);
  std::string interleave_flag = "--benchmark_enable_random_interleaving=true";
  std::string aggregates_flag = "--benchmark_report_aggregates_only=true";
  args.insert(args.begin() + 1, {repeat_flag.data(), interleave_flag.data(), aggregates_flag.data()});
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) std::exit(2);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}

}  // namespace qnoise::bench
