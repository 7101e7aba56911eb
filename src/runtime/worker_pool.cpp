#include "runtime/worker_pool.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "qnoise/error.h"

namespace qnoise::runtime {

namespace {

// How long an idle worker spins for the next call before it sleeps, when workers spin: longer than
// the gap between two layers of a token (attention and norms in between: tens of microseconds);
// chosen, not tuned (2-thread timings on this machine vary more than a tuning run could resolve).
constexpr auto kSpinTime = std::chrono::microseconds(300);

thread_local bool t_inside_part = false;

constexpr uint64_t kClosed = 0xffffffffu;  // a claim's part index while its call is being set up

// One call at a time. A call is published by bumping `generation_`; its parts are claimed through
// `claim_`, which holds the generation in its high half and the next part index in its low half,
// so a worker that wakes late cannot claim a part of a call that has already finished. Parts <
// 2^32 - 1 (kClosed).
class WorkerPool {
 public:
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      stop_.store(true);
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

  void run(int64_t parts, PartFunction part, IdleWorkers idle, int64_t threads) {
    while (static_cast<int64_t>(threads_.size()) < threads - 1) {
      // The worker starts from the generation before this call's, so it takes part in this call
      // however late it starts.
      const int index = static_cast<int>(threads_.size());
      threads_.emplace_back([this, index, seen = generation_.load()] { work(index, seen); });
    }
    // Close the previous call's claims before changing what they refer to: a worker that read
    // the old claim and then this call's part count must fail its compare-exchange, not run a
    // part of this call under the old generation, which would run that part twice
    // (docs/kernels.md, "Threads: the worker pool").
    const uint32_t generation = generation_.load() + 1;
    claim_.store(uint64_t{generation} << 32 | kClosed);
    part_ = &part;
    parts_.store(parts);
    done_.store(0);
    participants_.store(static_cast<int>(threads - 1));
    spin_after_.store(idle == IdleWorkers::Spin);
    error_ = nullptr;
    claim_.store(uint64_t{generation} << 32);
    generation_.store(generation);
    if (sleepers_.load() > 0) {
      { std::lock_guard<std::mutex> lock(sleep_mutex_); }  // a worker between its check and its wait
      wake_.notify_all();
    }
    run_claimed(generation);
    for (int64_t spins = 0; done_.load(std::memory_order_acquire) < parts; ++spins) {
      _mm_pause();
      if (spins > 4096) std::this_thread::yield();  // a worker was descheduled mid-part
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Runs parts of call `generation` until none is left.
  void run_claimed(uint32_t generation) {
    uint64_t claim = claim_.load();
    const uint64_t parts = static_cast<uint64_t>(parts_.load());
    while ((claim >> 32) == generation && (claim & 0xffffffffu) < parts) {
      if (!claim_.compare_exchange_weak(claim, claim + 1)) continue;
      t_inside_part = true;
      try {
        (*part_)(static_cast<int64_t>(claim & 0xffffffffu));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
      }
      t_inside_part = false;
      done_.fetch_add(1, std::memory_order_release);
      claim = claim_.load();
    }
  }

  void work(int index, uint32_t seen) {
    bool spin = false;
    for (;;) {
      if (spin) {
        const auto until = std::chrono::steady_clock::now() + kSpinTime;
        for (int i = 1; generation_.load(std::memory_order_relaxed) == seen; ++i) {
          _mm_pause();
          if (i % 64 == 0 && std::chrono::steady_clock::now() > until) break;
        }
      }
      if (generation_.load() == seen) {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleepers_.fetch_add(1);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        sleepers_.fetch_sub(1);
      }
      seen = generation_.load();
      if (stop_.load()) return;
      // parts_, part_ and participants_ were written before the generation: a late reader sees a
      // newer call's values, and then the claim's generation no longer matches `seen`.
      if (index < participants_.load()) run_claimed(seen);
      spin = spin_after_.load();
    }
  }

  std::vector<std::thread> threads_;
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> parts_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> participants_{0};
  std::atomic<bool> spin_after_{false};
  std::atomic<int> sleepers_{0};
  const PartFunction* part_ = nullptr;
  std::exception_ptr error_;
  std::mutex error_mutex_;
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<bool> stop_{false};
};

}  // namespace

void run_parts(int64_t parts, PartFunction part, IdleWorkers idle) {
  QNOISE_CHECK(parts >= 0 && static_cast<uint64_t>(parts) < kClosed, "run_parts: ", parts, " parts");
  const int64_t threads = std::min<int64_t>(parts, at::get_num_threads());
  static std::mutex caller;
  std::unique_lock<std::mutex> only_caller(caller, std::try_to_lock);
  if (threads <= 1 || t_inside_part || !only_caller.owns_lock()) {
    for (int64_t p = 0; p < parts; ++p) part(p);
    return;
  }
  static WorkerPool pool;
  pool.run(parts, part, idle, threads);
}

}  // namespace qnoise::runtime
