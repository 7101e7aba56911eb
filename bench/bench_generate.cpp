// Model-level benchmark: a compressed Transformer LM generating one sequence (batch 1) with its
// weights kept compressed (runtime kernels) against the same weights decoded to a float libtorch
// model. Each side runs in its own process (this program re-runs itself), so each resident-memory
// figure is that side's alone; the tokens/s and memory ratios are printed side by side.
//
//   build/bench/bench_generate FILE.qnz [--tokens 200] [--prompt 16] [--threads 1]
//
// The 1-thread figures need OPENBLAS_NUM_THREADS=1 (at::set_num_threads does not limit OpenBLAS).
// Generation uses the key/value cache (TransformerLm::log_probs_cached): each new token runs every
// layer on one position, the batch-1 case the kernels are for; when the context reaches the
// model's training length, the cache restarts from the last half of it.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "qnoise/error.h"
#include "qnoise/inference_model.h"
#include "qnoise/process_tuning.h"
#include "qnoise/qnz_file.h"
#include "qnoise/runtime_model.h"

namespace {

struct Options {
  std::string file, mode = "both";
  int64_t tokens = 200, prompt = 16, threads = 1;
};

// kB from /proc/self/status ("VmRSS" now, "VmHWM" the peak).
double status_kb(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1));
  return 0;
}

// Bytes of the model's parameters and buffers as held (placeholders hold one value), each storage once.
int64_t module_tensor_bytes(torch::nn::Module& module) {
  std::set<const void*> seen;
  int64_t bytes = 0;
  auto add = [&](const at::Tensor& t) {
    if (t.defined() && seen.insert(t.storage().data()).second) bytes += static_cast<int64_t>(t.storage().nbytes());
  };
  for (const auto& p : module.parameters()) add(p);
  for (const auto& b : module.buffers()) add(b);
  return bytes;
}

int64_t float_weight_bytes(const qnoise::CompressedModel& file) {
  int64_t bytes = 0;
  for (const auto& [name, weight] : file.tensors) bytes += 4 * weight.numel();
  return bytes;
}

// Runs one side and prints one JSON line.
void run_side(const Options& options) {
  at::set_num_threads(static_cast<int>(options.threads));
  (void)at::ones({8, 8}).mm(at::ones({8, 8}));  // libtorch's own start-up memory, before the model
  const double rss_before = status_kb("VmRSS");
  const qnoise::CompressedModel file = qnoise::read_qnz(options.file);
  const bool compressed = options.mode == "compressed";
  qnoise::InferenceModel model = compressed ? qnoise::build_inference_model(file) : qnoise::load_inference_model(file);
  std::unique_ptr<qnoise::RuntimeLayers> layers;
  if (compressed) {
    layers = std::make_unique<qnoise::RuntimeLayers>();
    const auto taken = layers->attach(*model.module, file);
    qnoise::load_compressed_tensors(model, file, taken);
    model.module->eval();
  }
  qnoise::release_freed_memory();
  const double rss_loaded = status_kb("VmRSS");
  auto& lm = model.language_model();
  const int64_t window = model.task.at("seq_len").get<int64_t>();
  torch::NoGradGuard no_grad;
  at::manual_seed(1);
  at::Tensor context = at::randint(4, lm.options.vocab_size(), {1, options.prompt}, at::kLong);
  qnoise::DecoderCache cache;
  at::Tensor log_probs = lm.log_probs_cached(context, cache);
  auto step = [&] {
    const at::Tensor next = log_probs.argmax(-1).view({1, 1});
    context = at::cat({context, next}, 1);
    if (cache.length + 1 > window) {
      cache = qnoise::DecoderCache();
      log_probs = lm.log_probs_cached(context.narrow(1, context.size(1) - window / 2, window / 2), cache);
    } else {
      log_probs = lm.log_probs_cached(next, cache);
    }
  };
  for (int i = 0; i < 4; ++i) step();  // warm-up: workspaces, thread pool
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < options.tokens; ++i) step();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << nlohmann::json{{"mode", options.mode},
                              {"tokens_per_second", static_cast<double>(options.tokens) / seconds},
                              {"model_rss_mb", (rss_loaded - rss_before) / 1024.0},
                              {"peak_rss_mb", status_kb("VmHWM") / 1024.0},
                              {"kernel_mb", layers ? layers->resident_bytes() / 1e6 : 0.0},
                              {"weights_mb", (module_tensor_bytes(*model.module) +
                                              (layers ? layers->resident_bytes() : 0)) / 1e6},
                              {"float_weights_mb", float_weight_bytes(file) / 1e6},
                              {"checksum", context.sum().item<int64_t>()}}
                   .dump()
            << std::endl;
}

nlohmann::json run_child(const Options& options, const std::string& mode) {
  std::ostringstream command;
  command << "/proc/" << getpid() << "/exe '" << options.file << "' --mode " << mode << " --tokens " << options.tokens
          << " --prompt " << options.prompt << " --threads " << options.threads;
  FILE* pipe = popen(command.str().c_str(), "r");
  QNOISE_CHECK(pipe != nullptr, "cannot run ", command.str());
  std::string out;
  char buffer[4096];
  while (fgets(buffer, sizeof buffer, pipe) != nullptr) out += buffer;
  QNOISE_CHECK(pclose(pipe) == 0, mode, " side failed: ", out);
  return nlohmann::json::parse(out.substr(out.rfind('{')));
}

}  // namespace

int main(int argc, char** argv) {
  qnoise::tune_process(argv);
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (arg == "--tokens") options.tokens = std::stoll(value());
    else if (arg == "--prompt") options.prompt = std::stoll(value());
    else if (arg == "--threads") options.threads = std::stoll(value());
    else if (arg == "--mode") options.mode = value();
    else if (arg.rfind("--", 0) == 0) { std::cerr << "unknown option " << arg << "\n"; return 2; }
    else options.file = arg;
  }
  if (options.file.empty()) {
    std::cerr << "usage: bench_generate FILE.qnz [--tokens N] [--prompt N] [--threads N]\n";
    return 2;
  }
  try {
    if (options.mode != "both") {
      run_side(options);
      return 0;
    }
    const nlohmann::json f = run_child(options, "float");
    const nlohmann::json c = run_child(options, "compressed");
    std::printf("%s: %lld tokens after a %lld-token prompt, batch 1, %lld thread(s)\n", options.file.c_str(),
                static_cast<long long>(options.tokens), static_cast<long long>(options.prompt),
                static_cast<long long>(options.threads));
    std::printf("%-12s %12s %14s %13s %10s %11s\n", "weights", "tokens/s", "model RSS MB", "peak RSS MB", "kernel MB",
                "weights MB");
    for (const auto* side : {&f, &c})
      std::printf("%-12s %12.1f %14.1f %13.1f %10.2f %11.2f\n", (*side)["mode"].get<std::string>().c_str(),
                  (*side)["tokens_per_second"].get<double>(), (*side)["model_rss_mb"].get<double>(),
                  (*side)["peak_rss_mb"].get<double>(), (*side)["kernel_mb"].get<double>(),
                  (*side)["weights_mb"].get<double>());
    std::printf("tokens/s ratio (compressed / float): %.2f\n",
                c["tokens_per_second"].get<double>() / f["tokens_per_second"].get<double>());
    std::printf("model RSS ratio (compressed / float): %.3f   peak RSS ratio: %.3f\n",
                c["model_rss_mb"].get<double>() / f["model_rss_mb"].get<double>(),
                c["peak_rss_mb"].get<double>() / f["peak_rss_mb"].get<double>());
    std::printf("weights in memory ratio (compressed / float; tensors and kernels): %.3f\n",
                c["weights_mb"].get<double>() / f["weights_mb"].get<double>());
    std::printf("same tokens generated: %s\n", f["checksum"] == c["checksum"] ? "yes" : "no");
  } catch (const std::exception& e) {
    std::cerr << "bench_generate: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
