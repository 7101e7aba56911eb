#include "cli/data_parallel_launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include "qnoise/error.h"

extern char** environ;

namespace qnoise::cli {

namespace {

using Clock = std::chrono::steady_clock;

// A port nobody listens on now (the kernel's choice), for a run confined to this machine.
int free_local_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  QNOISE_CHECK(fd >= 0, "cannot open a socket to find a free port: ", std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  close(fd);
  QNOISE_CHECK(ok, "cannot find a free port on 127.0.0.1: ", std::strerror(errno));
  return ntohs(address.sin_port);
}

// The command line without --nproc-per-node (and its value): what each rank runs.
std::vector<std::string> rank_command_line(const std::vector<std::string>& argv) {
  std::vector<std::string> out;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == "--nproc-per-node") {
      ++i;
      continue;
    }
    if (argv[i].rfind("--nproc-per-node=", 0) == 0) continue;
    out.push_back(argv[i]);
  }
  return out;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
                                  strsignal(WTERMSIG(status)) + ")";
  return "stopped";
}

volatile sig_atomic_t forwarded_signal = 0;
void remember_signal(int signal) { forwarded_signal = signal; }

}  // namespace

void add_data_parallel_flags(CLI::App* app, DataParallelFlags& flags) {
  const char* group = "Data parallel (docs/distributed.md)";
  app->add_option("--nproc-per-node", flags.nproc_per_node,
                  "Start N ranks on this machine, the cores split between them (as torchrun)")
      ->check(CLI::Range(1, 1024))
      ->group(group);
  app->add_option("--rank", flags.rank, "This process's rank (default: $RANK)")->group(group);
  app->add_option("--world-size", flags.world_size, "Number of ranks in all (default: $WORLD_SIZE)")->group(group);
  app->add_option("--master-addr", flags.master_addr, "Rank 0's address (default: $MASTER_ADDR or 127.0.0.1)")
      ->group(group);
  app->add_option("--master-port", flags.master_port,
                  "Rank 0's rendezvous port (default: $MASTER_PORT; with --nproc-per-node a free one)")
      ->group(group);
  app->add_option("--dist-timeout", flags.timeout_s,
                  "Seconds before a rank that does not answer fails the others (300)")
      ->check(CLI::Range(0.001, 1e7))
      ->group(group);
  app->add_option("--bucket-mb", flags.bucket_mb, "Gradient all-reduce bucket size in MB (4)")
      ->check(CLI::Range(0.001, 4096.0))
      ->group(group);
}

std::optional<DataParallelOptions> data_parallel_options(const DataParallelFlags& flags,
                                                         const LaunchEnvironment& environment) {
  const auto world_size = flags.world_size ? flags.world_size : environment.world_size;
  if (!world_size || *world_size <= 1) {
    QNOISE_CHECK(!flags.rank || *flags.rank == 0, "--rank ", *flags.rank, " needs --world-size (or WORLD_SIZE) above 1");
    return std::nullopt;
  }
  const auto rank = flags.rank ? flags.rank : environment.rank;
  QNOISE_CHECK(rank.has_value(), "a data-parallel run of ", *world_size,
               " ranks needs this process's rank: --rank or RANK (or start them all with --nproc-per-node)");
  DataParallelOptions options;
  options.rank = *rank;
  options.world_size = *world_size;
  if (flags.master_addr) options.master_addr = *flags.master_addr;
  else if (environment.master_addr) options.master_addr = *environment.master_addr;
  if (flags.master_port) options.master_port = *flags.master_port;
  else if (environment.master_port) options.master_port = *environment.master_port;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(flags.timeout_s * 1000));
  return options;
}

std::unique_ptr<DataParallelGroup> connect_if_data_parallel(const DataParallelFlags& flags,
                                                            const LaunchEnvironment& environment) {
  const auto options = data_parallel_options(flags, environment);
  if (!options) return nullptr;
  return DataParallelGroup::connect(*options);
}

std::optional<int> launch_local_ranks(const DataParallelFlags& flags, const LaunchEnvironment& environment) {
  if (flags.nproc_per_node <= 1) return std::nullopt;
  QNOISE_CHECK(!flags.rank && !flags.world_size && !environment.rank,
               "--nproc-per-node starts every rank itself: leave out --rank, --world-size and RANK");
  const int64_t n = flags.nproc_per_node;
  const int port = flags.master_port ? *flags.master_port : free_local_port();
  const std::string address = flags.master_addr ? *flags.master_addr : "127.0.0.1";
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const std::string threads = std::to_string(std::max<int64_t>(1, static_cast<int64_t>(cores) / n));

  std::vector<std::string> command = rank_command_line(environment.argv);
  std::vector<char*> arguments;
  for (auto& a : command) arguments.push_back(a.data());
  arguments.push_back(nullptr);
  // Each rank's environment, built before fork(): the child only calls execve.
  std::vector<std::vector<std::string>> environments(n);
  for (int64_t r = 0; r < n; ++r) {
    std::map<std::string, std::string> values;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry = *e;
      const auto equals = entry.find('=');
      if (equals != std::string::npos) values[entry.substr(0, equals)] = entry.substr(equals + 1);
    }
    values["RANK"] = values["LOCAL_RANK"] = std::to_string(r);
    values["WORLD_SIZE"] = values["LOCAL_WORLD_SIZE"] = std::to_string(n);
    values["MASTER_ADDR"] = address;
    values["MASTER_PORT"] = std::to_string(port);
    values.try_emplace("OPENBLAS_NUM_THREADS", threads);  // read when OpenBLAS loads
    values.try_emplace("OMP_NUM_THREADS", threads);
    for (const auto& [key, value] : values) environments[r].push_back(key + "=" + value);
  }
  std::cerr << "qnoise: starting " << n << " ranks on " << address << ":" << port << ", " << threads
            << " thread(s) each\n";

  std::vector<pid_t> pids(n, -1);
  for (int64_t r = 0; r < n; ++r) {
    std::vector<char*> env;
    for (auto& e : environments[r]) env.push_back(e.data());
    env.push_back(nullptr);
    const pid_t pid = fork();
    QNOISE_CHECK(pid >= 0, "cannot start rank ", r, ": ", std::strerror(errno));
    if (pid == 0) {
      execve("/proc/self/exe", arguments.data(), env.data());
      _exit(127);
    }
    pids[r] = pid;
  }

  signal(SIGINT, remember_signal);
  signal(SIGTERM, remember_signal);
  const auto grace = std::chrono::milliseconds(static_cast<int64_t>(flags.timeout_s * 1000)) + std::chrono::seconds(5);
  constexpr Clock::time_point kNever = Clock::time_point::max();
  Clock::time_point terminate_at = kNever, kill_at = kNever;
  std::string failure;
  int64_t running = n;
  while (running > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      const auto r = std::find(pids.begin(), pids.end(), pid) - pids.begin();
      if (r == n) continue;
      pids[r] = -1;
      --running;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && failure.empty()) {
        failure = "rank " + std::to_string(r) + " " + describe_status(status);
        terminate_at = Clock::now() + grace;  // the others should stop on their own well before
      }
      continue;
    }
    if (forwarded_signal != 0) {
      for (pid_t p : pids)
        if (p > 0) kill(p, forwarded_signal);
      if (failure.empty()) failure = std::string("interrupted by signal ") + strsignal(forwarded_signal);
      forwarded_signal = 0;
    }
    const auto now = Clock::now();
    if (now >= terminate_at) {
      for (pid_t p : pids)
        if (p > 0) kill(p, SIGTERM);
      terminate_at = kNever;
      kill_at = now + std::chrono::seconds(5);
    }
    if (now >= kill_at) {
      for (pid_t p : pids)
        if (p > 0) kill(p, SIGKILL);
      kill_at = kNever;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  QNOISE_CHECK(failure.empty(), "the data-parallel run failed: ", failure, " (its message is above)");
  return 0;
}

}  // namespace qnoise::cli
