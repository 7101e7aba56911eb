// Linear layer kernels on compressed weights against float, measured side by side in one run:
// for 4096x4096 and 1024x1024 weights at batch 1, 16 and 64, torch::mv / torch::mm on the float
// weight against PackedPqLinear (d = 8 and d = 4, K = 256), PackedInt8Linear and PackedInt4Linear
// (also with int8 activations, "*_a8": integer products for int8 and int4, int8 lookup tables for
// PQ, one batch row at a time; AVX2 at batch 1 only).
// Prints medians, float time / ours, GB/s of compressed weight bytes read (bytes() per call) and
// weights per second (out * in per call, whatever the batch), with the targets of issue 5:
//   batch 1: PQ d = 8 >= 5x, int8 >= 3x, int4 >= 5x faster than float; batch 16 and 64: none
//   more than 1.2x slower than torch::mm (ratio >= 0.83).
// Weights are random (randn for int8/int4, random codes and randn centroids for PQ): speed does not
// depend on the values. The compressed weights are read from cache when they fit (2 MB of PQ d=8
// codes for 4096x4096 does), as they would in a model small enough to stay resident.
//
// One thread count per run; OpenBLAS ignores at::set_num_threads, so pin it with the environment:
//   OPENBLAS_NUM_THREADS=1 build/bench/bench_linear_kernels --threads 1
//   OPENBLAS_NUM_THREADS=2 build/bench/bench_linear_kernels --threads 2 [--spin]
// --spin: the packed layers' workers spin briefly between calls instead of sleeping, as in `qnoise generate`
// (process_tuning.h: the options from the environment with ThreadWaiting::BriefSpin), and the packed
// layers split smaller layers over threads. The kernels and activations are QNOISE_KERNELS' and
// QNOISE_ACTIVATIONS' (the "*_a8" rows always use int8 activations, the others float ones).
// --sweep adds batches 4, 8 and 32 and, at every batch > 1, each float-activation layer on all three
// paths whichever the driver chooses ("_gemm": the panel GEMM; "_rows": PQ lookups, or int8/int4
// matvec per batch row; "_tiles": decoded tiles and the BLAS GEMM, the panel GEMM's predecessor),
// so the switch points of LinearTuning (qnoise/runtime_options.h) can be checked.
// --cold evicts the caches (reads 96 MB) before every timed call, as when a model's layers run
// one after another and none stays in cache; times are then of single calls (manual timing).
// Google Benchmark flags work as usual (e.g. --benchmark_filter=1024).
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "qnoise/compressed_weight.h"
#include "qnoise/error.h"
#include "qnoise/kernel_path.h"
#include "qnoise/packed_linear.h"
#include "qnoise/process_tuning.h"
#include "qnoise/runtime_options.h"
#include "ratio_reporter.h"
#include "runtime/worker_pool.h"

namespace {

constexpr int kRepetitions = 7;
constexpr int kColdIterations = 20;

bool g_cold = false;
// The packed layers' options: the environment's (process_tuning.h), set in main().
qnoise::RuntimeOptions g_options;

// OpenBLAS's threads busy-wait for work after each call before they sleep (2^28 cycles, ~0.1 s, by
// its default OPENBLAS_THREAD_TIMEOUT): measured at 2 threads, 1024x1024 PQ d = 8 with int8 tables took
// 10.6 us right after torch::mv against 7.4 with them asleep. A process running only the compressed
// model has them asleep (its layers do not call the BLAS at batch 1), so a packed kernel timed right
// after a float one first waits them out.
bool g_blas_threads_may_spin = false;
constexpr auto kBlasSpinWait = std::chrono::milliseconds(250);

// Runs `call` once per benchmark iteration; with --cold, after evicting the caches and timing
// only the call. `idle`: what the packed layers' workers do after the sweep (float's call passes
// Sleep, so that they leave the cores to OpenBLAS's threads).
template <typename Call>
void timed_loop(benchmark::State& state, const Call& call, qnoise::runtime::IdleWorkers idle) {
  static std::vector<char> sweep;
  for (auto _ : state) {
    if (!g_cold) {
      call();
      continue;
    }
    // Read, not written: a model's other layers evict a weight with clean lines. A written sweep
    // left 32 MB of dirty lines to write back during the timed call (batch 1, 1 thread, two
    // alternated runs each: 14 of the 16 ratios higher read, by 1-12% on their means). Read by
    // the packed layers' threads, each a slice, so every core's own caches are evicted too and
    // the workers have just run, as between a model's layers (read by this thread alone, the
    // workers fell asleep during the sweep and their wake-up was timed: 2 threads, 1024x1024 PQ
    // d = 8 took 190-236 us against 78-87 at 1 thread).
    if (sweep.empty()) sweep.assign(96u << 20, 1);
    const int64_t parts = at::get_num_threads();
    qnoise::runtime::run_parts(parts, [&](int64_t p) {
      uint64_t sum = 0;
      for (size_t i = sweep.size() * p / parts / 64 * 64; i < sweep.size() * (p + 1) / parts; i += 64)
        sum += static_cast<unsigned char>(sweep[i]);
      benchmark::DoNotOptimize(sum);
    }, idle);
    benchmark::ClobberMemory();
    const auto start = std::chrono::steady_clock::now();
    call();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
}

struct Shape {
  int64_t size;  // square weight: size x size
};

enum class Variant { Chosen, Gemm, NoGemm, Tiles };

struct Layers {
  torch::Tensor weight;  // float [n, n]
  qnoise::CompressedWeight pq8, pq4, int8, int4;  // what the packed layers are built from
  // The packed layers by kind ("pq_d8", "int4_a8", ...) and variant, each built once with its
  // options (packed()).
  std::map<std::string, std::unique_ptr<qnoise::PackedLinearBase>> built;
};

qnoise::CompressedWeight random_pq(int64_t n, int64_t d) {
  const auto codes = torch::randint(0, 256, {n * n / d}, torch::kLong).to(torch::kByte);
  return qnoise::compress_pq(qnoise::BlockLayout::linear({n, n}, d), torch::randn({256, d}), codes);
}

Layers& layers(int64_t n) {
  static std::map<int64_t, Layers> all;
  auto found = all.find(n);
  if (found != all.end()) return found->second;
  torch::manual_seed(0);
  Layers l;
  l.weight = torch::randn({n, n});
  l.pq8 = random_pq(n, 8);
  l.pq4 = random_pq(n, 4);
  l.int8 = qnoise::compress_scalar(l.weight, 8);
  l.int4 = qnoise::compress_scalar(l.weight, 4);
  return all.emplace(n, std::move(l)).first->second;
}

// The weight a kind runs ("pq_d8_a8", "pq_d8_gemm" -> "pq_d8").
std::string weight_kind(const std::string& kind) {
  for (const char* weight : {"pq_d8", "pq_d4", "int8", "int4"})
    if (kind.rfind(weight, 0) == 0) return weight;
  return kind;
}

// The packed n x n layer of `kind` ("*_a8": int8 activations) built with the options of `variant`:
// the environment's tuning (Chosen), or with its switch points moved so that every batch takes the
// panel GEMM (Gemm), the per-row paths (NoGemm) or decoded tiles and the BLAS GEMM (Tiles). Built on
// first use; main() builds every one it will time before the timed runs.
const qnoise::PackedLinearBase& packed(int64_t n, const std::string& kind, Variant variant) {
  Layers& l = layers(n);
  auto& layer = l.built[kind + "/" + std::to_string(static_cast<int>(variant))];
  if (layer) return *layer;
  qnoise::RuntimeOptions options = g_options;
  options.int8_activations = kind.find("_a8") != std::string::npos;
  auto& tuning = options.tuning;
  if (variant == Variant::Gemm || variant == Variant::Tiles) tuning.pq_gemm_min_batch = tuning.scalar_gemm_min_batch = 1;
  if (variant == Variant::Tiles) tuning.panel_gemm = false;
  if (variant == Variant::NoGemm)
    tuning.pq_gemm_min_batch = tuning.pq_medium_out_gemm_min_batch = tuning.scalar_gemm_min_batch = int64_t{1} << 30;
  const std::string weight = weight_kind(kind);
  if (weight == "pq_d8")
    layer = std::make_unique<qnoise::PackedPqLinear>(l.pq8, options);
  else if (weight == "pq_d4")
    layer = std::make_unique<qnoise::PackedPqLinear>(l.pq4, options);
  else if (weight == "int8")
    layer = std::make_unique<qnoise::PackedInt8Linear>(l.int8, options);
  else
    layer = std::make_unique<qnoise::PackedInt4Linear>(l.int4, options);
  return *layer;
}

void float_layer(benchmark::State& state, int64_t n, int64_t batch) {
  const Layers& l = layers(n);
  const auto x = torch::randn({batch, n});
  const auto x1 = x[0];
  timed_loop(state, [&] {
    if (batch == 1)
      benchmark::DoNotOptimize(torch::mv(l.weight, x1).data_ptr());
    else
      benchmark::DoNotOptimize(torch::mm(x, l.weight.t()).data_ptr());
  }, qnoise::runtime::IdleWorkers::Sleep);
  g_blas_threads_may_spin = true;
}

void packed_layer(benchmark::State& state, int64_t n, int64_t batch, const std::string& kind, Variant variant) {
  const qnoise::PackedLinearBase& layer = packed(n, kind, variant);
  const auto x = torch::randn({batch, n});
  auto y = torch::empty({batch, n});
  if (g_blas_threads_may_spin) std::this_thread::sleep_for(kBlasSpinWait);
  g_blas_threads_may_spin = false;
  timed_loop(state, [&] {
    layer.forward(x.data_ptr<float>(), batch, y.data_ptr<float>());
    benchmark::DoNotOptimize(y.data_ptr());
  }, qnoise::runtime::idle_workers(layer.options().tuning));
  // Only decoded tiles call the BLAS: the _tiles variant, and the reference kernels' large-batch
  // path (taken at some batch > 1); the SIMD paths run their own panel GEMM.
  g_blas_threads_may_spin =
      variant == Variant::Tiles || (layer.options().kernel_path == qnoise::KernelPath::Reference && batch > 1);
}

std::string name(int64_t n, int64_t batch, const std::string& kind) {
  return std::to_string(n) + "/batch" + std::to_string(batch) + "/" + kind;
}

std::vector<std::string> kinds() { return {"pq_d8", "pq_d8_a8", "pq_d4", "pq_d4_a8", "int8", "int8_a8", "int4", "int4_a8"}; }

std::vector<int64_t> batches(bool sweep) {
  if (sweep) return {1, 4, 8, 16, 32, 64};
  return {1, 16, 64};
}

void register_benchmarks(bool sweep) {
  for (int64_t n : {4096, 1024}) {
    for (int64_t batch : batches(sweep)) {
      auto setup = [](benchmark::internal::Benchmark* b) {
        b->Unit(benchmark::kMicrosecond);
        if (g_cold)
          b->UseManualTime()->Iterations(kColdIterations);
        else
          b->UseRealTime()->MinTime(0.2);
      };
      setup(benchmark::RegisterBenchmark(name(n, batch, "float").c_str(), float_layer, n, batch));
      for (const auto& kind : kinds())
        setup(benchmark::RegisterBenchmark(name(n, batch, kind).c_str(), packed_layer, n, batch, kind, Variant::Chosen));
      if (sweep && batch > 1) {
        for (const auto& kind : {"pq_d8", "pq_d4", "int8", "int4"}) {
          setup(benchmark::RegisterBenchmark(name(n, batch, std::string(kind) + "_gemm").c_str(), packed_layer, n,
                                             batch, kind, Variant::Gemm));
          setup(benchmark::RegisterBenchmark(name(n, batch, std::string(kind) + "_rows").c_str(), packed_layer, n,
                                             batch, kind, Variant::NoGemm));
          setup(benchmark::RegisterBenchmark(name(n, batch, std::string(kind) + "_tiles").c_str(), packed_layer, n,
                                             batch, kind, Variant::Tiles));
        }
      }
    }
  }
}

int64_t weight_bytes(int64_t n, const std::string& kind) {
  if (kind == "float") return n * n * 4;
  return packed(n, weight_kind(kind), Variant::Chosen).bytes();
}

// Target on float time / ours, or 0 when the issue sets none.
double target(int64_t batch, const std::string& kind) {
  if (kind.find("_gemm") != std::string::npos || kind.find("_rows") != std::string::npos ||
      kind.find("_tiles") != std::string::npos)
    return 0.0;
  if (batch > 1) return 1 / 1.2;
  if (kind.rfind("pq_d8", 0) == 0) return 5.0;
  if (kind.rfind("int8", 0) == 0) return 3.0;
  if (kind.rfind("int4", 0) == 0) return 5.0;
  return 0.0;
}

void print_table(const qnoise::bench::RatioReporter& reporter, bool sweep) {
  std::printf("\n%-10s %5s %-12s %10s %9s %9s %10s  %s\n", "shape", "batch", "kernel", "median us", "float/us",
              "GB/s", "Gweight/s", "target");
  for (int64_t n : {4096, 1024}) {
    for (int64_t batch : batches(sweep)) {
      const double base = reporter.median(name(n, batch, "float"));
      std::vector<std::string> rows = {"float"};
      for (const auto& kind : kinds()) rows.push_back(kind);
      if (sweep && batch > 1)
        for (const char* kind : {"pq_d8", "pq_d4", "int8", "int4"})
          for (const char* variant : {"_gemm", "_rows", "_tiles"}) rows.push_back(std::string(kind) + variant);
      for (const auto& kind : rows) {
        const double us = reporter.median(name(n, batch, kind));
        if (us <= 0) continue;
        const double ratio = base > 0 ? base / us : -1;
        const double goal = kind == "float" ? 0.0 : target(batch, kind);
        std::string verdict = goal <= 0 ? "" : (ratio >= goal ? "met" : "MISSED");
        if (goal > 0) verdict += batch == 1 ? " (>= " + std::to_string(goal).substr(0, 3) + "x)" : " (>= 0.83)";
        std::printf("%4lldx%-5lld %5lld %-12s %10.1f %9.2f %9.2f %10.2f  %s\n", static_cast<long long>(n),
                    static_cast<long long>(n), static_cast<long long>(batch), kind.c_str(), us, ratio,
                    weight_bytes(n, kind) / us * 1e-3, n * n / us * 1e-3, verdict.c_str());
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Passive OpenMP waiting and malloc thresholds (process_tuning.h); --spin: workers spin briefly
  // between calls, as in `qnoise generate`, and smaller layers are split over threads.
  qnoise::tune_process(argv);
  bool spin = false;
  for (int i = 1; i < argc; ++i) spin = spin || std::strcmp(argv[i], "--spin") == 0;
  try {
    g_options = qnoise::runtime_options_from_environment(spin ? qnoise::ThreadWaiting::BriefSpin
                                                              : qnoise::ThreadWaiting::Passive);
    g_options.kernel_path = qnoise::resolve_kernel_path(g_options.kernel_path);
  } catch (const qnoise::Error& e) {
    std::fprintf(stderr, "bench_linear_kernels: %s\n", e.what());
    return 1;
  }
  int threads = 1;
  bool sweep = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--sweep") == 0) {
      sweep = true;
    } else if (std::strcmp(argv[i], "--cold") == 0) {
      g_cold = true;
    } else if (std::strcmp(argv[i], "--spin") == 0) {
    } else {
      args.push_back(argv[i]);
    }
  }
  at::set_num_threads(threads);
  const char* openblas = std::getenv("OPENBLAS_NUM_THREADS");
  std::printf("threads %d (at::get_num_threads() = %d), OPENBLAS_NUM_THREADS = %s, kernels: %s, caches: %s, "
              "packed-layer workers between calls: %s (min_work_per_thread %lld)\n",
              threads, at::get_num_threads(), openblas ? openblas : "(unset: OpenBLAS uses every core)",
              qnoise::to_string(g_options.kernel_path), g_cold ? "evicted before each call" : "warm",
              g_options.tuning.spinning_workers ? "spin" : "sleep",
              static_cast<long long>(g_options.tuning.min_work_per_thread));
  // Build every layer to be timed outside the timed runs.
  for (int64_t n : {4096, 1024}) {
    for (const auto& kind : kinds()) packed(n, kind, Variant::Chosen);
    if (sweep)
      for (const char* kind : {"pq_d8", "pq_d4", "int8", "int4"})
        for (Variant variant : {Variant::Gemm, Variant::NoGemm, Variant::Tiles}) packed(n, kind, variant);
  }
  register_benchmarks(sweep);
  qnoise::bench::RatioReporter reporter;
  qnoise::bench::run_with_repetitions(static_cast<int>(args.size()), args.data(), reporter, kRepetitions);
  print_table(reporter, sweep);
  return 0;
}
