// `qnoise`: train with Quant-Noise, compress, inspect and run compressed models.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include "cli/command.h"
#include "qnoise/error.h"
#include "qnoise/runtime_options.h"
#include "qnoise/process_tuning.h"
#include "qnoise/version.h"

namespace {

// torchrun's variables (data_parallel_launch.h); a malformed number is an error naming it.
qnoise::cli::LaunchEnvironment launch_environment(int argc, char** argv) {
  qnoise::cli::LaunchEnvironment environment;
  environment.argv.assign(argv, argv + argc);
  auto integer = [](const char* name) -> std::optional<int64_t> {
    const char* text = std::getenv(name);
    if (text == nullptr || text[0] == '\0') return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(text, &end, 10);
    QNOISE_CHECK(errno == 0 && *end == '\0' && value >= 0, name, "='", text, "' is not a non-negative integer");
    return value;
  };
  environment.rank = integer("RANK");
  environment.world_size = integer("WORLD_SIZE");
  environment.local_world_size = integer("LOCAL_WORLD_SIZE");
  if (const auto port = integer("MASTER_PORT")) environment.master_port = static_cast<int>(*port);
  if (const char* address = std::getenv("MASTER_ADDR"); address != nullptr && address[0] != '\0')
    environment.master_addr = address;
  return environment;
}

// All cores, shared out between the local ranks of a data-parallel run.
int default_threads(const qnoise::cli::LaunchEnvironment& environment) {
  const unsigned cores = std::thread::hardware_concurrency();
  const int64_t ranks_here = std::max<int64_t>(1, environment.local_world_size.value_or(1));
  return std::max(1, static_cast<int>((cores == 0 ? 1 : cores) / ranks_here));
}

}  // namespace

int main(int argc, char** argv) {
  qnoise::tune_process(argv);
  CLI::App app{"qnoise " + qnoise::version() +
               ": extreme model compression with Quant-Noise (int8, int4, iterative PQ)"};
  app.set_version_flag("--version", "qnoise " + qnoise::version());
  app.footer(
      "Trust: .pt files (training checkpoints, TorchScript models) are TorchScript archives, code and pickled "
      "data: open only those from sources you trust. .qnz files are data only (a safetensors header and raw "
      "tensors, checksummed): they are safe to open from anywhere (docs/reliability.md).");
  qnoise::cli::LaunchEnvironment environment;
  try {
    environment = launch_environment(argc, argv);
  } catch (const qnoise::Error& e) {
    std::cerr << "qnoise: error: " << e.what() << "\n";
    return 1;
  }
  int threads = default_threads(environment);
  // Each thread costs start-up time and memory; far more than the cores only slows a run down.
  app.add_option("--threads", threads, "Threads for tensor operations (default: all cores)")
      ->check(CLI::Range(1, std::max(256, 4 * static_cast<int>(std::thread::hardware_concurrency()))));
  std::string activations;
  app.add_option("--activations", activations,
                 "float, or int8: int8 and int4 layers quantize their activations to 7-bit integers and multiply "
                 "in integers, PQ layers build integer tables rounded to bytes (with AVX-512; faster, rounds "
                 "activations; default float, or $QNOISE_ACTIVATIONS)")
      ->check(CLI::IsMember({"float", "int8"}));
  app.require_subcommand(1);
  // How compressed layers run: filled in from the environment and --activations once parsed.
  qnoise::RuntimeOptions runtime;
  std::vector<qnoise::cli::Command> commands = {qnoise::cli::add_demo_command(app),
                                                  qnoise::cli::add_data_command(app),
                                                  qnoise::cli::add_train_command(app, environment)};
  for (auto& command : qnoise::cli::add_compression_commands(app, runtime, environment)) commands.push_back(command);
  for (auto& command : qnoise::cli::add_inference_commands(app, runtime)) commands.push_back(command);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help, --version
    // Bad command lines fail like every other error: one message, exit status 1.
    std::cerr << "qnoise: error: " << e.what() << "\nRun with --help for more information.\n";
    return 1;
  }
  at::set_num_threads(threads);
  try {
    // `generate` runs small layers back to back at batch 1: workers that spin briefly between them
    // split even 1024-wide layers profitably (process_tuning.h).
    runtime = qnoise::runtime_options_from_environment(
        app.got_subcommand("generate") ? qnoise::ThreadWaiting::BriefSpin : qnoise::ThreadWaiting::Passive);
    if (!activations.empty()) runtime.int8_activations = activations == "int8";
    for (const auto& command : commands)
      if (command.app->parsed()) command.run();
  } catch (const qnoise::Error& e) {
    std::cerr << "qnoise: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "qnoise: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "qnoise: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
