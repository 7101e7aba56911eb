#pragma once
// Averages the gradients of a data-parallel model over every rank, overlapped with the backward
// pass: parameters are grouped into buckets of about `bucket_bytes` in reverse order of
// registration (roughly the order backward() produces their gradients); a hook on each parameter
// copies its gradient into the bucket as soon as autograd has it, and a full bucket's all-reduce
// starts at once, on Gloo's threads, while backward() goes on. Buckets start in index order on
// every rank, so the collectives always match. finish() waits for them and writes the averages
// into the parameters' .grad.
//
//   qnoise::GradientAverager averager(group, model->parameters());
//   loss.backward();
//   averager.finish();   // every rank now holds the same gradients
//   optimizer.step();
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "qnoise/data_parallel_group.h"

namespace qnoise {

class GradientAverager {
 public:
  static constexpr int64_t kDefaultBucketBytes = int64_t{4} << 20;
  GradientAverager(DataParallelGroup& group, std::vector<at::Tensor> parameters,
                   int64_t bucket_bytes = kDefaultBucketBytes);
  ~GradientAverager();
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;

  // After backward(): starts the buckets still waiting (parameters without a gradient this step
  // count as zeros), waits for every all-reduce and sets each parameter's .grad to the average.
  // Throws qnoise::Error (naming the rank that failed) when a rank dies or times out.
  void finish();

  size_t bucket_count() const;
  // Seconds finish() spent waiting for all-reduces since construction: communication that the
  // backward pass did not hide.
  double exposed_seconds() const { return exposed_seconds_; }

 private:
  struct State;
  DataParallelGroup& group_;
  std::unique_ptr<State> state_;
  double exposed_seconds_ = 0;
};

}  // namespace qnoise
