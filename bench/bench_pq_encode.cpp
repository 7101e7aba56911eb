// PQ encoding of one Linear weight: k-means training time and error, and how one EM iteration
// compares with the single GEMM a matrix-multiply formulation of its distances would need.
//
// Shape: a 1024x1024 torch::randn weight (seed 0) in blocks of 8 -> 131072 blocks, K = 256,
// 15 EM iterations, at::set_num_threads(2). Targets (DESIGN.md section 5: ratios measured in the
// same run, medians of repeated runs):
//   * training <= 0.5 s and relative error ||W - W_q|| / ||W|| <= 0.565;
//   * one EM iteration <= 3x the time of torch::mm([131072, 8] x [8, 256]).
//
// Run (at::set_num_threads does not limit OpenBLAS's own threads, so pin them too):
//   OPENBLAS_NUM_THREADS=2 build/bench/bench_pq_encode
// OMP_WAIT_POLICY=passive is set as the program loads, and main() calls qnoise::tune_process
// (process_tuning.h). Google Benchmark flags work as usual (e.g. --benchmark_filter=gemm); a summary
// with the targets follows the table. ("Library was built as DEBUG" refers to Debian's
// libbenchmark itself, not to qnoise.)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "qnoise/block_layout.h"
#include "qnoise/process_tuning.h"
#include "qnoise/product_quantizer.h"
#include "quant/kmeans.h"
#include "kernels/cpu_features.h"
#include "kernels/nearest_centroid_kernels.h"

namespace {

constexpr int64_t kWeightSize = 1024;
constexpr int64_t kBlockSize = 8;
constexpr int64_t kCentroids = 256;
constexpr int kEmIterations = 15;
constexpr int kThreads = 2;
constexpr int kRepetitions = 5;
constexpr double kTrainTargetMs = 500.0;
constexpr double kErrorTarget = 0.565;
constexpr double kEmOverGemmTarget = 3.0;

struct Problem {
  qnoise::BlockLayout layout = qnoise::BlockLayout::linear({kWeightSize, kWeightSize}, kBlockSize);
  torch::Tensor weight;
  torch::Tensor blocks;  // [131072, 8]
  Problem() {
    torch::manual_seed(0);
    weight = torch::randn({kWeightSize, kWeightSize});
    blocks = layout.to_blocks(weight).contiguous();
  }
};

const Problem& problem() {
  static const Problem instance;
  return instance;
}

qnoise::ProductQuantizerOptions train_options(qnoise::KMeansInit init) {
  return qnoise::ProductQuantizerOptions()
      .set_n_centroids(kCentroids)
      .set_n_iterations(kEmIterations)
      .set_init(init)
      .set_seed(0);
}

std::map<std::string, double> relative_errors;  // by benchmark name, filled by train_pq

void train_pq(benchmark::State& state, qnoise::KMeansInit init, const std::string& name) {
  const Problem& p = problem();
  qnoise::ProductQuantizer pq(kBlockSize, train_options(init));
  for (auto _ : state) pq.train(p.blocks);
  const auto rebuilt = p.layout.from_blocks(pq.decode(pq.compute_codes(p.blocks)));
  relative_errors[name] = qnoise::relative_error(p.weight, rebuilt);
  state.counters["rel_error"] = relative_errors[name];
}

// One E-step + repair + M-step from a fixed codebook.
void em_iteration(benchmark::State& state) {
  const Problem& p = problem();
  const auto initial = qnoise::kmeans_init_sampled(p.blocks, kCentroids, 0);
  auto options = train_options(qnoise::KMeansInit::Sampled).set_n_iterations(1);
  for (auto _ : state) benchmark::DoNotOptimize(qnoise::kmeans(p.blocks, options, initial));
}

// The distance GEMM -2 X C^T of the same E-step, written into a preallocated output so only the
// multiply is timed (torch::mm would also allocate and fault in 128 MiB every call).
void distance_gemm(benchmark::State& state, bool preallocated) {
  const Problem& p = problem();
  const auto centroids_t = torch::randn({kBlockSize, kCentroids});
  auto out = torch::empty({p.blocks.size(0), kCentroids});
  for (auto _ : state) {
    if (preallocated) {
      at::mm_out(out, p.blocks, centroids_t);
      benchmark::DoNotOptimize(out.data_ptr());
    } else {
      benchmark::DoNotOptimize(torch::mm(p.blocks, centroids_t));
    }
  }
}

// The E-step kernel alone on one thread: fused AVX2 vs the plain reference loops.
void nearest_centroid_kernel(benchmark::State& state, bool avx2) {
  if (avx2 && !qnoise::kernels::cpu_has_avx2_fma()) return state.SkipWithError("no AVX2+FMA");
  const int64_t rows = 16384;
  const auto codebook = torch::randn({kCentroids, kBlockSize});
  const qnoise::kernels::CentroidPanelStorage storage(codebook.data_ptr<float>(), kCentroids,
                                                      kBlockSize);
  std::vector<int32_t> index(rows);
  std::vector<float> distance(rows);
  const auto kernel =
      avx2 ? qnoise::kernels::nearest_centroid_avx2 : qnoise::kernels::nearest_centroid_reference;
  for (auto _ : state) {
    kernel(problem().blocks.data_ptr<float>(), rows, storage.panel(), index.data(),
           distance.data());
    benchmark::DoNotOptimize(index.data());
  }
  state.SetItemsProcessed(state.iterations() * rows);
}

// Prints the usual table and keeps the median real time (ms) of each benchmark.
class MedianCollector : public benchmark::ConsoleReporter {
 public:
  // Colours only on a terminal, so redirected output stays plain text.
  MedianCollector() : ConsoleReporter(isatty(fileno(stdout)) ? OO_ColorTabular : OO_Tabular) {}
  std::map<std::string, double> median_ms;
  void ReportRuns(const std::vector<Run>& reports) override {
    ConsoleReporter::ReportRuns(reports);
    for (const Run& run : reports) {
      if (run.run_type != Run::RT_Aggregate || run.aggregate_name != "median") continue;
      median_ms[run.run_name.function_name] =
          run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit) * 1e3;
    }
  }
};

void register_benchmarks() {
  using qnoise::KMeansInit;
  auto timed = [](benchmark::internal::Benchmark* b) {
    b->Unit(benchmark::kMillisecond)
        ->Repetitions(kRepetitions)
        ->ReportAggregatesOnly(true)
        ->UseRealTime();
  };
  for (auto [name, init] : {std::pair{"pq_train/sampled", KMeansInit::Sampled},
                            std::pair{"pq_train/kmeans++", KMeansInit::KMeansPlusPlus}}) {
    const std::string label = name;
    timed(benchmark::RegisterBenchmark(name, [init, label](benchmark::State& s) {
            train_pq(s, init, label);
          })->Iterations(1));
  }
  timed(benchmark::RegisterBenchmark("em_iteration", em_iteration));
  timed(benchmark::RegisterBenchmark("distance_gemm/mm_out", distance_gemm, true));
  timed(benchmark::RegisterBenchmark("distance_gemm/mm", distance_gemm, false));
  timed(benchmark::RegisterBenchmark("nearest_centroid_16k_rows_1_thread/avx2",
                                     nearest_centroid_kernel, true));
  timed(benchmark::RegisterBenchmark("nearest_centroid_16k_rows_1_thread/reference",
                                     nearest_centroid_kernel, false));
}

// The figure, or a negative value when its benchmark was filtered out.
double lookup(const std::map<std::string, double>& values, const std::string& key) {
  const auto it = values.find(key);
  return it == values.end() ? -1.0 : it->second;
}

const char* verdict(double value, double target) {
  return value < 0 ? "not run" : value <= target ? "ok" : "MISSED";
}

void print_summary(const std::map<std::string, double>& ms) {
  std::printf(
      "\n== PQ encode summary: 1024x1024 randn Linear, block %lld, K %lld, %d iterations, "
      "%d threads (medians of %d runs) ==\n",
      static_cast<long long>(kBlockSize), static_cast<long long>(kCentroids), kEmIterations,
      kThreads, kRepetitions);
  for (const char* name : {"pq_train/sampled", "pq_train/kmeans++"}) {
    const double time = lookup(ms, name), error = lookup(relative_errors, name);
    std::printf(
        "%-18s train %7.1f ms (target <= %.0f ms: %s)  relative error %.4f (target <= "
        "%.3f: %s)\n",
        name, time, kTrainTargetMs, verdict(time, kTrainTargetMs), error, kErrorTarget,
        verdict(error, kErrorTarget));
  }
  const double em = lookup(ms, "em_iteration"), gemm = lookup(ms, "distance_gemm/mm_out"),
               gemm_alloc = lookup(ms, "distance_gemm/mm");
  std::printf(
      "one EM iteration %.2f ms; distance GEMM [131072,8]x[8,256]: mm_out %.2f ms, "
      "mm (allocating) %.2f ms\n",
      em, gemm, gemm_alloc);
  const double ratio = em > 0 && gemm > 0 ? em / gemm : -1.0;
  std::printf("EM iteration / GEMM (mm_out) = %.2f (target <= %.1f: %s); EM / mm = %.2f\n", ratio,
              kEmOverGemmTarget, verdict(ratio, kEmOverGemmTarget),
              em > 0 && gemm_alloc > 0 ? em / gemm_alloc : -1.0);
  const double avx2 = lookup(ms, "nearest_centroid_16k_rows_1_thread/avx2"),
               reference = lookup(ms, "nearest_centroid_16k_rows_1_thread/reference");
  if (avx2 > 0 && reference > 0)
    std::printf(
        "nearest-centroid kernel, 1 thread, 16384 rows: AVX2 %.2f ms vs reference %.2f ms "
        "(%.1fx)\n",
        avx2, reference, reference / avx2);
}

}  // namespace

int main(int argc, char** argv) {
  qnoise::tune_process(argv);  // passive OpenMP waiting: see process_tuning.h
  at::set_num_threads(kThreads);
  const char* openblas_threads = std::getenv("OPENBLAS_NUM_THREADS");
  std::printf("at::get_num_threads() = %d, OPENBLAS_NUM_THREADS = %s, AVX2+FMA kernel: %s\n",
              at::get_num_threads(), openblas_threads ? openblas_threads : "(unset: set it to 2)",
              qnoise::kernels::cpu_has_avx2_fma() ? "yes" : "no");
  problem();  // build the data outside the timed runs
  benchmark::Initialize(&argc, argv);
  register_benchmarks();
  MedianCollector reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  print_summary(reporter.median_ms);
  return 0;
}
