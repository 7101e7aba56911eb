#include "qnoise/data_parallel_group.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "qnoise/error.h"

namespace qnoise {

namespace {

using Milliseconds = std::chrono::milliseconds;
constexpr Milliseconds kHeartbeatPeriod{500};
constexpr Milliseconds kSilenceThatMeansGone{2500};  // five missed heartbeats
constexpr Milliseconds kHealthStoreTimeout{5000};

std::string text_of(const std::vector<uint8_t>& bytes) { return std::string(bytes.begin(), bytes.end()); }
std::vector<uint8_t> bytes_of(const std::string& text) { return std::vector<uint8_t>(text.begin(), text.end()); }

std::string message_of(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->what_without_backtrace();
  std::string what = e.what();
  const auto newline = what.find('\n');
  return newline == std::string::npos ? what : what.substr(0, newline);
}

bool is_loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0; }

c10::intrusive_ptr<c10d::TCPStore> open_store(const DataParallelOptions& options, bool server, Milliseconds timeout) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(options.master_port);
  store_options.isServer = server;
  store_options.waitWorkers = false;  // qnoise's own rendezvous below names the missing ranks
  store_options.timeout = timeout;
  const std::string where = options.master_addr + ":" + std::to_string(options.master_port);
  try {
    return c10::make_intrusive<c10d::TCPStore>(options.master_addr, store_options);
  } catch (const std::exception& e) {
    if (server)
      throw Error("rank 0 cannot host the rendezvous store on " + where +
                  " (is the port already in use? choose another with --master-port or MASTER_PORT): " + message_of(e));
    throw Error("rank " + std::to_string(options.rank) + " cannot reach the rendezvous store on " + where +
                " within " + std::to_string(timeout.count() / 1000) + " s (is rank 0 running, with this address and port?): " +
                message_of(e));
  }
}

// Sends this rank's heartbeat to the store every kHeartbeatPeriod on its own connection, and
// tells which ranks have gone silent when a collective fails.
class Heartbeats {
 public:
  Heartbeats(const DataParallelOptions& options) : rank_(options.rank), world_size_(options.world_size) {
    store_ = open_store(options, /*server=*/false, kHealthStoreTimeout);
    thread_ = std::thread([this] { beat(); });
  }
  ~Heartbeats() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  // "rank 1 stopped (no heartbeat for 2.5 s)", "rank 0 is gone: ..." or that every rank is alive.
  std::string diagnose() {
    try {
      const std::vector<int64_t> before = counts();
      std::this_thread::sleep_for(kSilenceThatMeansGone);
      const std::vector<int64_t> after = counts();
      std::string silent;
      for (int64_t r = 0; r < world_size_; ++r)
        if (r != rank_ && after[r] == before[r]) silent += (silent.empty() ? "" : ", ") + std::to_string(r);
      if (silent.empty()) return "every rank still sends heartbeats, so one is stuck or failed in its own work";
      return "rank " + silent + " stopped: no heartbeat for " +
             std::to_string(kSilenceThatMeansGone.count() / 1000.0).substr(0, 3) + " s";
    } catch (const std::exception& e) {
      return "rank 0 is gone: its rendezvous store does not answer (" + message_of(e) + ")";
    }
  }

 private:
  std::vector<int64_t> counts() {
    std::lock_guard<std::mutex> lock(store_mutex_);
    std::vector<int64_t> out;
    for (int64_t r = 0; r < world_size_; ++r) out.push_back(store_->add("qnoise/heartbeat/" + std::to_string(r), 0));
    return out;
  }
  void beat() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      try {
        std::lock_guard<std::mutex> store_lock(store_mutex_);
        store_->add("qnoise/heartbeat/" + std::to_string(rank_), 1);
      } catch (const std::exception&) {
        // The store's host (rank 0) is gone; the next collective reports it.
      }
      lock.lock();
      wake_.wait_for(lock, kHeartbeatPeriod, [this] { return stopping_; });
    }
  }

  int64_t rank_, world_size_;
  c10::intrusive_ptr<c10d::TCPStore> store_;
  std::mutex store_mutex_, mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

class GlooGroup;

class GlooCollective : public PendingCollective {
 public:
  GlooCollective(GlooGroup& group, c10::intrusive_ptr<c10d::Work> work, const char* what)
      : group_(group), work_(std::move(work)), what_(what) {}
  void wait() override;

 private:
  GlooGroup& group_;
  c10::intrusive_ptr<c10d::Work> work_;
  const char* what_;
};

class GlooGroup : public DataParallelGroup {
 public:
  explicit GlooGroup(const DataParallelOptions& options) : options_(options) {
    store_ = open_store(options, options.rank == 0, options.timeout);
    rendezvous();
    heartbeats_ = std::make_unique<Heartbeats>(options);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
    const std::string host = !options.interface_host.empty() ? options.interface_host
                             : is_loopback(options.master_addr) ? "127.0.0.1"
                                                                 : "";
    try {
      gloo_options->devices.push_back(host.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                                   : c10d::ProcessGroupGloo::createDeviceForHostname(host));
      gloo_options->threads = options.gloo_threads;
      auto prefixed = c10::make_intrusive<c10d::PrefixStore>("gloo", store_);
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, static_cast<int>(options.rank),
                                                           static_cast<int>(options.world_size), gloo_options);
    } catch (const std::exception& e) {
      fail("connecting the ranks", e);
    }
  }

  int64_t rank() const override { return options_.rank; }
  int64_t world_size() const override { return options_.world_size; }

  void all_reduce_sum(std::vector<at::Tensor>& tensors) override {
    for_each_dtype(tensors, [&](at::Tensor& flat) { all_reduce_sum_async(flat)->wait(); });
  }

  std::unique_ptr<PendingCollective> all_reduce_sum_async(at::Tensor& tensor) override {
    QNOISE_CHECK(tensor.is_contiguous(), "all-reduce needs a contiguous tensor");
    std::vector<at::Tensor> one{tensor};
    return start("an all-reduce", [&] { return group_->allreduce(one); });
  }

  void broadcast(std::vector<at::Tensor>& tensors, int64_t root) override {
    for_each_dtype(tensors, [&](at::Tensor& flat) {
      std::vector<at::Tensor> one{flat};
      c10d::BroadcastOptions broadcast_options;
      broadcast_options.rootRank = root;
      start("a broadcast", [&] { return group_->broadcast(one, broadcast_options); })->wait();
    });
  }

  void barrier() override {
    start("a barrier", [&] { return group_->barrier(); })->wait();
  }

  void check_same_configuration(const nlohmann::json& what, const std::string& description) override {
    const std::string round = std::to_string(configuration_rounds_++);
    const std::string prefix = "qnoise/configuration/" + round + "/";
    guarded("comparing configurations", [&] {
      if (rank() == 0) store_->set(prefix + "0", bytes_of(what.dump()));
      const auto reference = nlohmann::json::parse(text_of(store_->get(prefix + "0")));
      std::string verdict;
      if (reference != what) {
        const auto patch = nlohmann::json::diff(reference, what);
        const std::string path = patch.empty() ? "" : patch.front().value("path", "");
        std::ostringstream message;
        message << "rank " << rank() << " was started with other " << description << " than rank 0 (first difference at "
                << path << ": rank 0 has " << (path.empty() ? reference : reference.value(nlohmann::json::json_pointer(path), nlohmann::json())).dump()
                << ", rank " << rank() << " has "
                << (path.empty() ? what : what.value(nlohmann::json::json_pointer(path), nlohmann::json())).dump() << ")";
        verdict = message.str();
      }
      store_->set(prefix + "verdict/" + std::to_string(rank()), bytes_of(verdict));
      std::string first_failure;
      for (int64_t r = 0; r < world_size(); ++r) {
        const std::string other = text_of(store_->get(prefix + "verdict/" + std::to_string(r)));
        if (first_failure.empty()) first_failure = other;
      }
      // Rank 0 hosts the store: it stays until every rank has read the verdicts.
      store_->add(prefix + "read", 1);
      if (rank() == 0 && !first_failure.empty()) wait_for_count(prefix + "read", world_size());
      QNOISE_CHECK(first_failure.empty(), first_failure);
    });
  }

  bool rank0_says(bool answer) override {
    std::vector<at::Tensor> flag{at::full({1}, answer ? 1 : 0, at::kInt)};
    broadcast(flag, 0);
    return flag[0].item<int>() != 0;
  }

  [[noreturn]] void fail(const std::string& what, const std::exception& e) {
    throw Error("rank " + std::to_string(rank()) + ": " + what + " failed (" + message_of(e) + "); " +
                heartbeats_->diagnose());
  }

 private:
  // Every rank registers; rank 0's world size must be everybody's; all arrive within the timeout.
  void rendezvous() {
    const std::string me = std::to_string(options_.rank);
    guarded("the rendezvous", [&] {
      // The world size is written before the rank counts as arrived, so whoever sees it arrived
      // can read it.
      const bool first = store_->add("qnoise/claims/" + me, 1) == 1;
      QNOISE_CHECK(first, "two processes were started as rank ", me, " (each rank needs its own RANK)");
      store_->set("qnoise/world/" + me, bytes_of(std::to_string(options_.world_size)));
      store_->set("qnoise/rank/" + me, bytes_of("arrived"));
      const std::string theirs = text_of(store_->get("qnoise/world/0"));
      store_->add("qnoise/world_read", 1);
      QNOISE_CHECK(theirs == std::to_string(options_.world_size), "rank ", me, " was started with world size ",
                   options_.world_size, " but rank 0 with ", theirs);
      std::vector<std::string> keys;
      for (int64_t r = 0; r < options_.world_size; ++r) keys.push_back("qnoise/rank/" + std::to_string(r));
      try {
        store_->wait(keys, options_.timeout);
      } catch (const std::exception&) {
        std::string missing;
        for (int64_t r = 0; r < options_.world_size; ++r)
          if (!store_->check({keys[r]})) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
        throw Error("rank " + me + ": rank " + missing + " did not join within " +
                    std::to_string(options_.timeout.count() / 1000) + " s (started? same --master-addr/--master-port?)");
      }
      for (int64_t r = 1; r < options_.world_size; ++r) {
        const std::string size = text_of(store_->get("qnoise/world/" + std::to_string(r)));
        if (size == std::to_string(options_.world_size)) continue;
        // Rank 0 hosts the store: it stays until every rank has read its world size.
        if (options_.rank == 0) wait_for_count("qnoise/world_read", options_.world_size);
        throw Error("rank " + std::to_string(r) + " was started with world size " + size + " but rank 0 with " +
                    std::to_string(options_.world_size));
      }
    });
  }

  // Waits (up to the timeout) until the store's counter `key` reaches `count`.
  void wait_for_count(const std::string& key, int64_t count) {
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    while (store_->add(key, 0) < count && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  // Runs a store operation; store failures become errors naming the step.
  template <typename Step>
  void guarded(const std::string& what, Step step) {
    try {
      step();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error("rank " + std::to_string(rank()) + ": " + what + " failed: " + message_of(e) +
                  (rank() == 0 ? "" : " (rank 0, which hosts the store, has stopped: see its message)"));
    }
  }

  template <typename Launch>
  std::unique_ptr<PendingCollective> start(const char* what, Launch launch) {
    try {
      return std::make_unique<GlooCollective>(*this, launch(), what);
    } catch (const std::exception& e) {
      fail(what, e);
    }
  }

  // Tensors of one dtype are flattened into one buffer, reduced or broadcast, and copied back.
  template <typename Collective>
  void for_each_dtype(std::vector<at::Tensor>& tensors, Collective collective) {
    std::map<at::ScalarType, std::vector<at::Tensor*>> groups;
    for (auto& t : tensors) groups[t.scalar_type()].push_back(&t);
    for (auto& [dtype, members] : groups) {
      std::vector<at::Tensor> flat_parts;
      for (const at::Tensor* t : members) flat_parts.push_back(t->detach().reshape(-1));
      at::Tensor flat = at::cat(flat_parts).contiguous();
      collective(flat);
      int64_t offset = 0;
      at::NoGradGuard no_grad;
      for (at::Tensor* t : members) {
        const int64_t n = t->numel();
        t->detach().copy_(flat.slice(0, offset, offset + n).view(t->sizes()));
        offset += n;
      }
    }
  }

  DataParallelOptions options_;
  c10::intrusive_ptr<c10d::TCPStore> store_;
  std::unique_ptr<Heartbeats> heartbeats_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  int64_t configuration_rounds_ = 0;
};

void GlooCollective::wait() {
  try {
    work_->wait();
  } catch (const std::exception& e) {
    group_.fail(what_, e);
  }
}

}  // namespace

std::unique_ptr<DataParallelGroup> DataParallelGroup::connect(const DataParallelOptions& options) {
  QNOISE_CHECK(options.world_size >= 1, "the world size must be at least 1, got ", options.world_size);
  QNOISE_CHECK(options.rank >= 0 && options.rank < options.world_size, "rank ", options.rank,
               " is outside 0..", options.world_size - 1, " (world size ", options.world_size, ")");
  QNOISE_CHECK(options.master_port > 0 && options.master_port < 65536, "the master port must be in 1..65535, got ",
               options.master_port);
  QNOISE_CHECK(options.timeout.count() > 0, "the distributed timeout must be positive");
  QNOISE_CHECK(!options.master_addr.empty(), "the master address is empty");
  return std::make_unique<GlooGroup>(options);
}

}  // namespace qnoise
