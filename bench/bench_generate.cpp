// Model-level benchmark: a compressed Transformer LM generating one sequence (batch 1) with its
// weights kept compressed (runtime kernels, the architecture built without float weights) against
// the same weights decoded to a float libtorch model ("float"), and that model with its batch-1
// products through torch::mv ("float-mv", the fastest float baseline). Each side runs in its own
// process (this program re-runs itself), so each resident-memory figure is that side's alone; the
// tokens/s and memory ratios are printed side by side. A fourth side, "compressed-a8", runs the
// compressed model with int8 activations (int8/int4 layers multiply in integers, PQ layers look up
// int8 tables; packed_linear.h); it reports how many of its greedy tokens agree with float's.
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
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "qnoise/error.h"
#include "qnoise/inference_model.h"
#include "qnoise/layer_kernel.h"
#include "qnoise/packed_linear.h"
#include "qnoise/process_tuning.h"
#include "qnoise/qnz_file.h"
#include "qnoise/runtime_model.h"
#include "qnoise/runtime_options.h"
#include "qnoise/runtime_task.h"

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

// The float model's layers through torch::mv when they compute one position: libtorch's Linear runs
// a one-row product as a GEMM, and OpenBLAS then packs the whole weight on every call. This is the
// fastest batch-1 float model libtorch offers, the fair baseline for the kernels ("float-mv").
class FloatMatvecKernel : public qnoise::LayerKernel {
 public:
  FloatMatvecKernel(at::Tensor weight, at::Tensor bias, bool embedding)
      : weight_(std::move(weight)), bias_(std::move(bias)), embedding_(embedding) {}
  at::Tensor forward(const at::Tensor& input) const override {
    if (embedding_) return at::embedding(weight_, input);
    const at::Tensor y = linear(input);
    return bias_.defined() ? y + bias_ : y;
  }
  at::Tensor linear(const at::Tensor& input) const override {
    if (input.numel() != input.size(-1)) return at::matmul(input, weight_.t());
    std::vector<int64_t> shape = input.sizes().vec();
    shape.back() = weight_.size(0);
    return at::mv(weight_, input.reshape({-1})).view(shape);
  }
  at::Tensor weight() const override { return weight_; }
  int64_t resident_bytes() const override { return 0; }  // the module's own weight

 private:
  at::Tensor weight_, bias_;
  bool embedding_;
};

// Attaches FloatMatvecKernel to every Linear and Embedding of `module` (each layer owns its kernel).
void attach_matvec(torch::nn::Module& module) {
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    auto* linear = dynamic_cast<torch::nn::LinearImpl*>(item.value().get());
    auto* embedding = dynamic_cast<torch::nn::EmbeddingImpl*>(item.value().get());
    if (linear != nullptr)
      qnoise::set_layer_kernel(*linear, std::make_shared<FloatMatvecKernel>(linear->weight, linear->bias, false));
    else if (embedding != nullptr)
      qnoise::set_layer_kernel(*embedding, std::make_shared<FloatMatvecKernel>(embedding->weight, at::Tensor(), true));
  }
}

// Runs one side with the packed layers' options `runtime_options` (compressed sides) and prints one
// JSON line.
void run_side(const Options& options, qnoise::RuntimeOptions runtime_options) {
  at::set_num_threads(static_cast<int>(options.threads));
  (void)at::ones({8, 8}).mm(at::ones({8, 8}));  // libtorch's own start-up memory, before the model
  const double rss_before = status_kb("VmRSS"), anon_before = status_kb("RssAnon");
  qnoise::InferenceModel model;
  std::unique_ptr<qnoise::RuntimeLayers> layers;
  int64_t float_bytes = 0;
  const bool compressed = options.mode.rfind("compressed", 0) == 0;
  runtime_options.int8_activations = options.mode == "compressed-a8";
  {
    // The file's contents go once the model is loaded, as in `qnoise generate`.
    const qnoise::CompressedModel file = qnoise::read_qnz(options.file);
    float_bytes = float_weight_bytes(file);
    if (compressed) {
      qnoise::RuntimeInferenceModel runtime = qnoise::load_runtime_inference_model(file, runtime_options);
      model = std::move(runtime.model);
      layers = std::move(runtime.layers);
    } else {
      model = qnoise::load_inference_model(file);
    }
  }
  if (options.mode == "float-mv") attach_matvec(*model.module);
  qnoise::release_freed_memory();
  const double rss_loaded = status_kb("VmRSS"), peak_loading = status_kb("VmHWM");
  // Anonymous pages only: the resident growth also counts library code and data pages touched for
  // the first time while loading (file-backed, shared), 4.6 of the 5.7 MB on the d 256 LM.
  const double anon_loaded = status_kb("RssAnon");
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
                              {"model_anon_mb", (anon_loaded - anon_before) / 1024.0},
                              {"end_rss_mb", (status_kb("VmRSS") - rss_before) / 1024.0},
                              {"peak_model_rss_mb", (status_kb("VmHWM") - rss_before) / 1024.0},
                              {"peak_loading_mb", (peak_loading - rss_before) / 1024.0},
                              {"peak_rss_mb", status_kb("VmHWM") / 1024.0},
                              {"kernel_mb", layers ? layers->resident_bytes() / 1e6 : 0.0},
                              {"weights_mb", (module_tensor_bytes(*model.module) +
                                              (layers ? layers->resident_bytes() : 0)) / 1e6},
                              {"float_weights_mb", float_bytes / 1e6},
                              {"checksum", context.sum().item<int64_t>()},
                              {"packed_workers", runtime_options.tuning.spinning_workers ? "spin" : "sleep"},
                              {"generated", std::vector<int64_t>(context.data_ptr<int64_t>() + options.prompt,
                                                                 context.data_ptr<int64_t>() + context.numel())}}
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
      // Each side as its command would run it: compressed sides as `qnoise generate` (workers spin
      // briefly between layers), float sides with sleeping workers, their faster setting (the
      // spinning workers take the core OpenBLAS's second thread needs). The parent process only
      // starts the sides, so each child starts from the user's environment.
      qnoise::tune_process(argv);
      run_side(options, qnoise::runtime_options_from_environment(options.mode.rfind("compressed", 0) == 0
                                                                     ? qnoise::ThreadWaiting::BriefSpin
                                                                     : qnoise::ThreadWaiting::Passive));
      return 0;
    }
    const nlohmann::json f = run_child(options, "float");
    const nlohmann::json m = run_child(options, "float-mv");
    const nlohmann::json c = run_child(options, "compressed");
    const nlohmann::json a = run_child(options, "compressed-a8");
    std::printf("%s: %lld tokens after a %lld-token prompt, batch 1, %lld thread(s)\n", options.file.c_str(),
                static_cast<long long>(options.tokens), static_cast<long long>(options.prompt),
                static_cast<long long>(options.threads));
    // Resident memory is counted from just before loading (libtorch's own is the rest of the process).
    std::printf("%-13s %9s %10s %9s %12s %10s %13s %10s %11s %8s\n", "weights", "tokens/s", "loaded MB", "anon MB",
                "generated MB", "peak MB", "process peak", "kernel MB", "weights MB", "workers");
    for (const auto* side : {&f, &m, &c, &a})
      std::printf("%-13s %9.1f %10.1f %9.1f %12.1f %10.1f %13.1f %10.2f %11.2f %8s\n",
                  (*side)["mode"].get<std::string>().c_str(), (*side)["tokens_per_second"].get<double>(),
                  (*side)["model_rss_mb"].get<double>(), (*side)["model_anon_mb"].get<double>(),
                  (*side)["end_rss_mb"].get<double>(), (*side)["peak_model_rss_mb"].get<double>(),
                  (*side)["peak_rss_mb"].get<double>(), (*side)["kernel_mb"].get<double>(),
                  (*side)["weights_mb"].get<double>(), (*side)["packed_workers"].get<std::string>().c_str());
    auto ratio = [&](const char* key) { return c[key].get<double>() / f[key].get<double>(); };
    std::printf("tokens/s ratio (compressed / float): %.2f; against float-mv: %.2f\n", ratio("tokens_per_second"),
                c["tokens_per_second"].get<double>() / m["tokens_per_second"].get<double>());
    std::printf("resident memory ratios (compressed / float): loaded %.3f, after generating %.3f, peak %.3f, "
                "process peak %.3f\n",
                ratio("model_rss_mb"), ratio("end_rss_mb"), ratio("peak_model_rss_mb"), ratio("peak_rss_mb"));
    std::printf("weights in memory ratio (compressed / float; tensors and kernels): %.3f\n", ratio("weights_mb"));
    const double file_mb = static_cast<double>(std::filesystem::file_size(options.file)) / 1e6;
    std::printf("compressed memory after loading / file size: resident %.2f, anonymous %.2f (file %.2f MB)\n",
                c["model_rss_mb"].get<double>() * 1.048576 / file_mb, c["model_anon_mb"].get<double>() * 1.048576 / file_mb,
                file_mb);
    std::printf("same tokens generated: %s\n",
                f["checksum"] == c["checksum"] && m["checksum"] == c["checksum"] ? "yes" : "no");
    // Greedy decoding follows its own earlier choices, so one different token changes the rest.
    const auto float_tokens = f["generated"].get<std::vector<int64_t>>();
    const auto a8_tokens = a["generated"].get<std::vector<int64_t>>();
    size_t agree = 0;
    while (agree < float_tokens.size() && agree < a8_tokens.size() && float_tokens[agree] == a8_tokens[agree]) ++agree;
    std::printf("int8 activations: tokens/s ratio against float %.2f, against float-mv %.2f, against compressed %.2f; "
                "the first %zu of %zu greedy tokens (warm-up included) the same as float's\n",
                a["tokens_per_second"].get<double>() / f["tokens_per_second"].get<double>(),
                a["tokens_per_second"].get<double>() / m["tokens_per_second"].get<double>(),
                a["tokens_per_second"].get<double>() / c["tokens_per_second"].get<double>(), agree, float_tokens.size());
  } catch (const std::exception& e) {
    std::cerr << "bench_generate: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
