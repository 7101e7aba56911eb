#include "qnoise/gradient_averager.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>

#include "qnoise/error.h"

namespace qnoise {

struct GradientAverager::State {
  struct Slot {
    size_t bucket = 0;
    int64_t offset = 0;
  };
  struct Bucket {
    std::vector<size_t> members;  // indices into parameters
    at::Tensor flat;              // the members' gradients, back to back
    std::vector<bool> filled;     // per member: its gradient arrived this step
    size_t waiting = 0;           // members whose gradient has not arrived
    std::unique_ptr<PendingCollective> reduction;
  };

  DataParallelGroup* group = nullptr;
  std::vector<at::Tensor> parameters;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  std::vector<unsigned> hooks;
  size_t next_to_start = 0;

  void reset_step() {
    for (auto& bucket : buckets) {
      std::fill(bucket.filled.begin(), bucket.filled.end(), false);
      bucket.waiting = bucket.members.size();
    }
    next_to_start = 0;
  }

  at::Tensor slice_of(size_t parameter) {
    const Slot& slot = slots[parameter];
    const at::Tensor& p = parameters[parameter];
    return buckets[slot.bucket].flat.slice(0, slot.offset, slot.offset + p.numel()).view(p.sizes());
  }

  size_t member_index(const Bucket& bucket, size_t parameter) const {
    return static_cast<size_t>(std::find(bucket.members.begin(), bucket.members.end(), parameter) -
                               bucket.members.begin());
  }

  void on_gradient(size_t parameter, const at::Tensor& gradient) {
    QNOISE_CHECK(!gradient.is_sparse(), "data-parallel training needs dense gradients (a sparse embedding?)");
    Bucket& bucket = buckets[slots[parameter].bucket];
    const size_t member = member_index(bucket, parameter);
    at::NoGradGuard no_grad;
    if (bucket.filled[member]) {  // a second backward() before finish(): accumulate
      QNOISE_CHECK(!bucket.reduction, "a gradient arrived after its bucket's all-reduce started: call "
                   "GradientAverager::finish() after each backward()");
      slice_of(parameter).add_(gradient);
      return;
    }
    slice_of(parameter).copy_(gradient);
    bucket.filled[member] = true;
    if (--bucket.waiting == 0) start_ready_buckets();
  }

  // Buckets start strictly in index order, so every rank issues the same sequence of collectives.
  void start_ready_buckets() {
    while (next_to_start < buckets.size() && buckets[next_to_start].waiting == 0) {
      Bucket& bucket = buckets[next_to_start++];
      bucket.reduction = group->all_reduce_sum_async(bucket.flat);
    }
  }
};

GradientAverager::GradientAverager(DataParallelGroup& group, std::vector<at::Tensor> parameters,
                                   int64_t bucket_bytes)
    : group_(group), state_(std::make_unique<State>()) {
  QNOISE_CHECK(bucket_bytes > 0, "the gradient bucket size must be positive, got ", bucket_bytes);
  State& state = *state_;
  state.group = &group;
  for (auto& p : parameters)
    if (p.requires_grad()) state.parameters.push_back(p);
  state.slots.resize(state.parameters.size());
  // Reverse order: the last layers' gradients come first in backward(). A bucket holds one dtype.
  std::vector<int64_t> bucket_numel;
  for (size_t i = state.parameters.size(); i-- > 0;) {
    const at::Tensor& p = state.parameters[i];
    const int64_t element = static_cast<int64_t>(p.element_size());
    const bool open = !state.buckets.empty() && state.buckets.back().flat.scalar_type() == p.scalar_type() &&
                      (bucket_numel.back() + p.numel()) * element <= bucket_bytes;
    if (!open) {
      state.buckets.emplace_back();
      state.buckets.back().flat = at::empty({0}, p.options().requires_grad(false));  // its dtype, for now
      bucket_numel.push_back(0);
    }
    state.slots[i] = {state.buckets.size() - 1, bucket_numel.back()};
    state.buckets.back().members.push_back(i);
    bucket_numel.back() += p.numel();
  }
  for (size_t b = 0; b < state.buckets.size(); ++b)
    state.buckets[b].flat = at::zeros({bucket_numel[b]}, state.buckets[b].flat.options());
  for (auto& bucket : state.buckets) bucket.filled.assign(bucket.members.size(), false);
  state.reset_step();
  for (size_t i = 0; i < state.parameters.size(); ++i) {
    State* raw = state_.get();
    state.hooks.push_back(
        state.parameters[i].register_hook([raw, i](const at::Tensor& gradient) { raw->on_gradient(i, gradient); }));
  }
}

GradientAverager::~GradientAverager() {
  for (size_t i = 0; i < state_->parameters.size(); ++i) state_->parameters[i].remove_hook(state_->hooks[i]);
}

size_t GradientAverager::bucket_count() const { return state_->buckets.size(); }

void GradientAverager::finish() {
  State& state = *state_;
  at::NoGradGuard no_grad;
  // Parameters that got no gradient on this rank (unused this step) contribute zeros.
  for (size_t b = state.next_to_start; b < state.buckets.size(); ++b) {
    State::Bucket& bucket = state.buckets[b];
    for (size_t m = 0; m < bucket.members.size(); ++m)
      if (!bucket.filled[m]) state.slice_of(bucket.members[m]).zero_();
    bucket.waiting = 0;
  }
  state.start_ready_buckets();
  const auto start = std::chrono::steady_clock::now();
  const double inverse_world = 1.0 / static_cast<double>(group_.world_size());
  for (auto& bucket : state.buckets) {
    auto reduction = std::move(bucket.reduction);
    reduction->wait();
    bucket.flat.mul_(inverse_world);
  }
  exposed_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (size_t i = 0; i < state.parameters.size(); ++i) {
    at::Tensor& p = state.parameters[i];
    if (p.grad().defined())
      p.mutable_grad().copy_(state.slice_of(i));
    else
      p.mutable_grad() = state.slice_of(i).clone();
  }
  state.reset_step();
}

}  // namespace qnoise
