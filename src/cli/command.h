#pragma once
// How subcommands plug into the `qnoise` program: each registers its options on a CLI11
// subcommand and leaves an action that main() runs once parsing succeeded and threads are set.
#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

#include "cli/data_parallel_launch.h"
#include "qnoise/runtime_options.h"

namespace qnoise::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<void()> run;
};

Command add_demo_command(CLI::App& parent);
Command add_data_command(CLI::App& parent);
// `environment`: torchrun's variables and the command line, for data-parallel runs.
Command add_train_command(CLI::App& parent, const LaunchEnvironment& environment);
// quantize, prune, eval, info, export. `runtime`: how compressed models run (read when a command
// runs, after parsing).
std::vector<Command> add_compression_commands(CLI::App& parent, const RuntimeOptions& runtime,
                                              const LaunchEnvironment& environment);
// generate, predict: run a .qnz model from the file alone.
std::vector<Command> add_inference_commands(CLI::App& parent, const RuntimeOptions& runtime);
// `qnoise demo layer`, registered by the demo command.
Command add_demo_layer_command(CLI::App& demo);

}  // namespace qnoise::cli
