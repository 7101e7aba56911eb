// The data-parallel group and gradient averaging, with the ranks as threads of this process on
// loopback (Gloo runs fine with several contexts in one process).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <future>
#include <thread>

#include "qnoise/data_parallel_group.h"
#include "qnoise/error.h"
#include "qnoise/gradient_averager.h"
#include "qnoise/seeded_order.h"

namespace {

// A port for this test's run: distinct between tests of one process and between processes.
int test_port() {
  static int next = 20000 + static_cast<int>(getpid() % 20000);
  return next += 7;
}

qnoise::DataParallelOptions rank_options(int64_t rank, int64_t world, int port, int timeout_s = 20) {
  qnoise::DataParallelOptions options;
  options.rank = rank;
  options.world_size = world;
  options.master_port = port;
  options.timeout = std::chrono::seconds(timeout_s);
  options.gloo_threads = 1;
  return options;
}

// Runs body(rank) on `world` threads, each with its own group; returns each rank's error ("" if none).
std::vector<std::string> run_ranks(int64_t world, const std::function<void(qnoise::DataParallelGroup&)>& body,
                                   int timeout_s = 20, const std::function<int64_t(int64_t)>& world_of = nullptr) {
  const int port = test_port();
  std::vector<std::future<std::string>> ranks;
  for (int64_t r = 0; r < world; ++r)
    ranks.push_back(std::async(std::launch::async, [&, r] {
      try {
        auto group = qnoise::DataParallelGroup::connect(rank_options(r, world_of ? world_of(r) : world, port, timeout_s));
        body(*group);
        return std::string();
      } catch (const std::exception& e) {
        return std::string(e.what());
      }
    }));
  std::vector<std::string> errors;
  for (auto& r : ranks) errors.push_back(r.get());
  return errors;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST(DataParallelGroup, AllReduceSumsAndBroadcastCopiesAcrossDtypes) {
  const auto errors = run_ranks(3, [](qnoise::DataParallelGroup& group) {
    const double r = static_cast<double>(group.rank());
    std::vector<at::Tensor> sums{at::full({2, 3}, r + 1, at::kFloat), at::full({4}, r, at::kDouble),
                                 at::full({1}, static_cast<int64_t>(r) + 10, at::kLong)};
    group.all_reduce_sum(sums);
    EXPECT_TRUE(torch::equal(sums[0], at::full({2, 3}, 6.0, at::kFloat)));  // 1 + 2 + 3
    EXPECT_TRUE(torch::equal(sums[1], at::full({4}, 3.0, at::kDouble)));
    EXPECT_EQ(sums[2].item<int64_t>(), 33);
    std::vector<at::Tensor> values{at::arange(5, at::kFloat) * (r + 1), at::full({1}, static_cast<int64_t>(r), at::kLong)};
    group.broadcast(values, 1);
    EXPECT_TRUE(torch::equal(values[0], at::arange(5, at::kFloat) * 2));
    EXPECT_EQ(values[1].item<int64_t>(), 1);
    EXPECT_TRUE(group.rank0_says(group.rank() == 0));
  });
  for (const auto& e : errors) EXPECT_EQ(e, "");
}

TEST(DataParallelGroup, GradientsAreTheMeanOfTheRanksInEveryBucket) {
  // Each rank: the same MLP, its own data; one layer is used by rank 0 only. A 1 KB bucket cap
  // makes several buckets.
  auto make_model = [] {
    torch::manual_seed(3);
    return torch::nn::Sequential(torch::nn::Linear(16, 32), torch::nn::Tanh(), torch::nn::Linear(32, 8));
  };
  auto data = [](int64_t rank) {
    auto generator = at::detail::createCPUGenerator(qnoise::mix_seed(9, static_cast<uint64_t>(rank)));
    return at::randn({5, 16}, generator);
  };
  std::vector<std::vector<at::Tensor>> local(2);  // each rank's own gradients
  std::mutex mutex;
  auto loss_of = [&](torch::nn::Sequential& model, torch::nn::Linear& extra, int64_t rank) {
    at::Tensor loss = model->forward(data(rank)).pow(2).mean();
    if (rank == 0) loss = loss + extra->forward(data(rank)).sum();
    return loss;
  };
  for (int64_t r = 0; r < 2; ++r) {
    auto model = make_model();
    torch::nn::Linear extra(16, 2);
    loss_of(model, extra, r).backward();
    for (auto& p : model->parameters()) local[r].push_back(p.grad().clone());
    for (auto& p : extra->parameters()) local[r].push_back(r == 0 ? p.grad().clone() : at::zeros_like(p));
  }
  size_t buckets = 0;
  const auto errors = run_ranks(2, [&](qnoise::DataParallelGroup& group) {
    std::unique_lock<std::mutex> building(mutex);  // one thread at a time draws from torch's generator
    auto model = make_model();
    torch::nn::Linear extra(16, 2);
    building.unlock();
    std::vector<at::Tensor> parameters = model->parameters();
    for (auto& p : extra->parameters()) parameters.push_back(p);
    qnoise::GradientAverager averager(group, parameters, 1024);
    for (int step = 0; step < 2; ++step) {  // a second step reuses the buckets
      for (auto& p : parameters) p.mutable_grad() = at::Tensor();
      loss_of(model, extra, group.rank()).backward();
      averager.finish();
      for (size_t i = 0; i < parameters.size(); ++i)
        EXPECT_TRUE(torch::allclose(parameters[i].grad(), (local[0][i] + local[1][i]) / 2, 1e-6, 1e-7))
            << "parameter " << i << " rank " << group.rank();
    }
    std::lock_guard<std::mutex> lock(mutex);
    buckets = averager.bucket_count();
  });
  for (const auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_GE(buckets, 3u);
}

TEST(DataParallelGroup, RanksStartedWithOtherSettingsAreNamed) {
  const auto errors = run_ranks(2, [](qnoise::DataParallelGroup& group) {
    nlohmann::json settings = {{"task", {{"seed", 1}}}, {"lr", group.rank() == 0 ? 0.001 : 0.002}};
    group.check_same_configuration(settings, "settings");
  });
  for (const auto& e : errors) {
    EXPECT_TRUE(contains(e, "rank 1 was started with other settings than rank 0")) << e;
    EXPECT_TRUE(contains(e, "/lr: rank 0 has 0.001, rank 1 has 0.002")) << e;
  }
}

TEST(DataParallelGroup, WorldSizesThatDisagreeAreErrors) {
  const auto errors = run_ranks(
      2, [](qnoise::DataParallelGroup&) {}, 5, [](int64_t rank) { return rank == 0 ? 2 : 3; });
  for (const auto& e : errors) EXPECT_TRUE(contains(e, "rank 1 was started with world size 3 but rank 0 with 2")) << e;
}

TEST(DataParallelGroup, ARankThatNeverComesIsNamedAfterTheTimeout) {
  const auto start = std::chrono::steady_clock::now();
  try {
    qnoise::DataParallelGroup::connect(rank_options(0, 2, test_port(), 2));
    FAIL() << "connected alone";
  } catch (const qnoise::Error& e) {
    EXPECT_TRUE(contains(e.what(), "rank 1 did not join within 2 s")) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(DataParallelGroup, ARankThatLeavesFailsTheOthersNamingIt) {
  const auto errors = run_ranks(2, [](qnoise::DataParallelGroup& group) {
    if (group.rank() == 1) throw qnoise::Error("rank 1 leaves");  // its group closes its connections
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    std::vector<at::Tensor> t{at::ones({4})};
    group.all_reduce_sum(t);
  });
  EXPECT_TRUE(contains(errors[0], "rank 0: an all-reduce failed")) << errors[0];
  EXPECT_TRUE(contains(errors[0], "rank 1 stopped")) << errors[0];
}

TEST(DataParallelGroup, BadOptionsAndABusyPortAreClearErrors) {
  auto message = [](const qnoise::DataParallelOptions& options) {
    try {
      qnoise::DataParallelGroup::connect(options);
    } catch (const qnoise::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_TRUE(contains(message(rank_options(2, 2, test_port())), "rank 2 is outside 0..1"));
  EXPECT_TRUE(contains(message(rank_options(0, 2, 70000)), "master port must be in 1..65535"));
  // Rank 0 of one run holds the port; rank 0 of another cannot host its store there.
  const int port = test_port();
  std::thread holder([&] {
    try {
      auto group = qnoise::DataParallelGroup::connect(rank_options(0, 2, port, 5));
    } catch (const qnoise::Error&) {
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE(contains(message(rank_options(0, 2, port, 2)), "port already in use"));
  holder.join();
}
