// `qnoise`: train with Quant-Noise, compress, inspect and run compressed models.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <thread>

#include "cli/command.h"
#include "qnoise/error.h"
#include "qnoise/version.h"

namespace {

// libgomp's worker threads spin after every parallel region; on a 2-core machine they take the
// core OpenBLAS's threads need and parallel regions wait a whole scheduler tick (measured here: a
// 16 MB tensor copy took 8 ms instead of 1.4 ms). libgomp reads OMP_WAIT_POLICY only when it
// loads, so set it and restart the program once; a user's own setting is left alone.
void ensure_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then carry on as we are
}

int default_threads() {
  const unsigned cores = std::thread::hardware_concurrency();
  return cores == 0 ? 1 : static_cast<int>(cores);
}

}  // namespace

int main(int argc, char** argv) {
  ensure_passive_openmp(argv);
  CLI::App app{"qnoise " + qnoise::version() +
               ": extreme model compression with Quant-Noise (int8, int4, iterative PQ)"};
  app.set_version_flag("--version", "qnoise " + qnoise::version());
  int threads = default_threads();
  app.add_option("--threads", threads, "Threads for tensor operations (default: all cores)")
      ->check(CLI::PositiveNumber);
  app.require_subcommand(1);
  std::vector<qnoise::cli::Command> commands = {qnoise::cli::add_demo_command(app)};

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  at::set_num_threads(threads);
  try {
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
