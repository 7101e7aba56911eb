#pragma once
// Data-parallel runs of `qnoise train` and `qnoise quantize`, launched like torchrun:
// `--nproc-per-node N` starts N local ranks (this program again, one process each, the cores
// split between them); a rank started by torchrun or a cluster scheduler reads RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR and MASTER_PORT (read in main), which the matching flags override.
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qnoise/data_parallel_group.h"

namespace qnoise::cli {

// torchrun's environment, read once in main().
struct LaunchEnvironment {
  std::optional<int64_t> rank, world_size, local_world_size;
  std::optional<std::string> master_addr;
  std::optional<int> master_port;
  std::vector<std::string> argv;  // this process's command line, for --nproc-per-node to start again
};

struct DataParallelFlags {
  int64_t nproc_per_node = 1;
  std::optional<int64_t> rank, world_size;
  std::optional<std::string> master_addr;
  std::optional<int> master_port;
  double timeout_s = 300;
  double bucket_mb = 4;
};

// Registers --nproc-per-node, --rank, --world-size, --master-addr, --master-port, --dist-timeout
// and --bucket-mb in a "Data parallel" group of `app`.
void add_data_parallel_flags(CLI::App* app, DataParallelFlags& flags);

// The rank this process is, from the flags over the environment; nullopt when the run is not
// data parallel (no world size above 1). Throws qnoise::Error on inconsistent values.
std::optional<DataParallelOptions> data_parallel_options(const DataParallelFlags& flags,
                                                         const LaunchEnvironment& environment);

// With --nproc-per-node N > 1: starts N ranks of this command on this machine and waits for them.
// Returns their exit status (0 when all succeeded); when one fails, the others are given the
// timeout to stop on their own and then terminated. nullopt when there is nothing to launch.
std::optional<int> launch_local_ranks(const DataParallelFlags& flags, const LaunchEnvironment& environment);

// Connects when the options ask for a data-parallel run, else nullptr.
std::unique_ptr<DataParallelGroup> connect_if_data_parallel(const DataParallelFlags& flags,
                                                            const LaunchEnvironment& environment);

}  // namespace qnoise::cli
