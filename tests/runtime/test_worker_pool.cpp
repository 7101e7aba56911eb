// run_parts: every part exactly once, whatever the thread count, the waiting mode, nesting or a
// second caller; exceptions reach the caller.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "runtime/worker_pool.h"

namespace {

using qnoise::runtime::IdleWorkers;
using qnoise::runtime::run_parts;

class ThreadCount {
 public:
  explicit ThreadCount(int threads) : saved_(at::get_num_threads()) { at::set_num_threads(threads); }
  ~ThreadCount() { at::set_num_threads(saved_); }

 private:
  int saved_;
};

// Runs `parts` parts that count their calls; expects each called exactly once.
void expect_each_part_once(int64_t parts, IdleWorkers idle) {
  std::vector<std::atomic<int>> calls(static_cast<size_t>(parts));
  run_parts(parts, [&](int64_t p) { calls[static_cast<size_t>(p)].fetch_add(1); }, idle);
  for (int64_t p = 0; p < parts; ++p) ASSERT_EQ(calls[static_cast<size_t>(p)].load(), 1) << "part " << p << " of " << parts;
}

}  // namespace

TEST(WorkerPool, RunsEveryPartExactlyOnceAtAnyThreadCount) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadCount count(threads);
    for (int64_t parts : {0, 1, 2, 3, 7, 64, 1000})
      for (IdleWorkers idle : {IdleWorkers::Spin, IdleWorkers::Sleep}) expect_each_part_once(parts, idle);
  }
}

TEST(WorkerPool, UsesTheOtherThreadsWhenPartsWait) {
  // Two parts that each wait for the other to start can only both start on two threads at once;
  // a worker that missed the call (the first version's, when the call created it) leaves one
  // waiting, here for at most 10 s. The first call of a process creates the worker: this test runs
  // in its own process under ctest.
  ThreadCount count(2);
  for (int call = 0; call < 3; ++call) {
    std::atomic<int> started{0};
    std::atomic<bool> gave_up{false};
    run_parts(2, [&](int64_t) {
      started.fetch_add(1);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (started.load() < 2)
        if (std::chrono::steady_clock::now() > deadline) {
          gave_up = true;
          return;
        } else {
          std::this_thread::yield();
        }
    });
    ASSERT_FALSE(gave_up.load()) << "call " << call << ": the two parts never ran at once";
  }
}

TEST(WorkerPool, ManyCallsBackToBackRunEachPartOnce) {
  // Short calls one after another, as a model's layers: a worker waking late must not run a part
  // of a call that has finished, nor one of the next call under the old one (a part run twice
  // made a call return before another of its parts was done).
  for (int threads : {2, 3}) {
    ThreadCount count(threads);
    std::vector<int64_t> values(4);
    std::atomic<int64_t> runs{0};
    int64_t expected_runs = 0;
    for (int call = 0; call < 20000; ++call) {
      const int64_t parts = 1 + call % 4;
      std::fill(values.begin(), values.end(), -1);
      run_parts(parts,
                [&](int64_t p) {
                  values[static_cast<size_t>(p)] = call * 10 + p;
                  runs.fetch_add(1);
                },
                call % 100 == 0 ? IdleWorkers::Sleep : IdleWorkers::Spin);
      expected_runs += parts;
      for (int64_t p = 0; p < parts; ++p) {
        const int64_t value = values[static_cast<size_t>(p)];  // copied: a late write must not hide
        ASSERT_EQ(value, call * 10 + p) << "call " << call << " part " << p << " of " << parts;
      }
      ASSERT_EQ(runs.load(), expected_runs) << "call " << call;
    }
  }
}

TEST(WorkerPool, RethrowsAPartsExceptionAfterTheOthersRan) {
  ThreadCount count(2);
  std::atomic<int> ran{0};
  EXPECT_THROW(run_parts(8,
                         [&](int64_t p) {
                           ran.fetch_add(1);
                           if (p == 3) throw std::runtime_error("part 3 failed");
                         }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 8);
  expect_each_part_once(5, IdleWorkers::Spin);  // the pool still works
}

TEST(WorkerPool, NestedAndConcurrentCallsRunEveryPart) {
  ThreadCount count(2);
  std::atomic<int> inner{0};
  run_parts(4, [&](int64_t) { run_parts(3, [&](int64_t) { inner.fetch_add(1); }); });
  EXPECT_EQ(inner.load(), 12);

  // Two callers at once: one gets the pool, the other runs its parts itself.
  std::atomic<int64_t> total{0};
  auto caller = [&] {
    for (int call = 0; call < 2000; ++call) run_parts(4, [&](int64_t p) { total.fetch_add(p + 1); });
  };
  std::thread other(caller);
  caller();
  other.join();
  EXPECT_EQ(total.load(), 2 * 2000 * (1 + 2 + 3 + 4));
}
