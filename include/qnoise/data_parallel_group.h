#pragma once
// The processes of one data-parallel run and the collectives they share, on libtorch's c10d:
// rendezvous through a c10d::TCPStore hosted by rank 0, all-reduce and broadcast through
// c10d::ProcessGroupGloo. Every failure is a qnoise::Error that names what went wrong: a port
// in use, a world size or configuration that differs between ranks, a rank that died or stopped
// answering (found through the heartbeats each rank keeps in the store), a timeout.
//
//   qnoise::DataParallelOptions options;            // from torchrun's RANK, WORLD_SIZE, ...
//   options.rank = 1; options.world_size = 2;
//   auto group = qnoise::DataParallelGroup::connect(options);
//   group->check_same_configuration(config);        // every rank started with the same settings
//   group->all_reduce_sum(tensors);
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace qnoise {

struct DataParallelOptions {
  int64_t rank = 0;
  int64_t world_size = 1;
  std::string master_addr = "127.0.0.1";  // rank 0's address: it hosts the rendezvous store
  int master_port = 29500;
  // A rank that does not answer within this time fails the collective on the others (and the
  // rendezvous, when not every rank arrives).
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  // The network interface Gloo uses is the one that reaches this host name ("": master_addr for
  // loopback runs, this machine's host name otherwise).
  std::string interface_host;
  int gloo_threads = 2;  // Gloo's own threads, which run the collectives beside the computation
};

// A collective in flight; wait() throws qnoise::Error naming the failure.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
};

class DataParallelGroup {
 public:
  // Rendezvous of `world_size` ranks. Throws qnoise::Error on bad options, a port rank 0 cannot
  // listen on, ranks that disagree on the world size or claim the same rank, or ranks that do
  // not all arrive within the timeout.
  static std::unique_ptr<DataParallelGroup> connect(const DataParallelOptions& options);
  virtual ~DataParallelGroup() = default;

  virtual int64_t rank() const = 0;
  virtual int64_t world_size() const = 0;

  // In place, over every rank: element-wise sums; rank `root`'s values (broadcast). Tensors of
  // one dtype travel as one buffer.
  virtual void all_reduce_sum(std::vector<at::Tensor>& tensors) = 0;
  virtual std::unique_ptr<PendingCollective> all_reduce_sum_async(at::Tensor& tensor) = 0;
  virtual void broadcast(std::vector<at::Tensor>& tensors, int64_t root = 0) = 0;
  virtual void barrier() = 0;

  // Throws qnoise::Error on every rank whose `what` (e.g. the task configuration and trainer
  // settings) differs from rank 0's, naming the rank and the first differing key.
  virtual void check_same_configuration(const nlohmann::json& what, const std::string& description) = 0;

  // Rank 0's answer to `question` on every rank (e.g. "does the checkpoint exist?").
  virtual bool rank0_says(bool answer) = 0;
};

// True when `world_size` > 1 ranks are asked for (a group is then needed).
inline bool is_data_parallel(const DataParallelOptions& options) { return options.world_size > 1; }

}  // namespace qnoise
