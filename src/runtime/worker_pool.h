#pragma once
// The packed layers' own threads. A batch-1 layer is a few microseconds of work, so handing half of
// it to another thread must cost far less than that: this pool does, at::parallel_for through
// OpenMP does not, and a call never waits for sleeping workers to wake (docs/kernels.md, "Threads:
// the worker pool"). Having our own threads also lets each call say whether its workers should
// wait for the next call spinning (batch-1 layers back to back) or go to sleep at once (a BLAS call
// follows and needs the cores), which one OpenMP setting for the whole process cannot.
#include <cstdint>

#include "qnoise/runtime_options.h"

namespace qnoise::runtime {

// What the workers do when a call's parts are done: spin for a moment, waiting for the next call
// (small layers back to back), or sleep at once (a BLAS call follows and needs the cores).
enum class IdleWorkers { Spin, Sleep };

// What the layers' tuning asks for between calls.
inline IdleWorkers idle_workers(const LinearTuning& tuning) {
  return tuning.spinning_workers ? IdleWorkers::Spin : IdleWorkers::Sleep;
}

// A reference to a callable taking the part index, without std::function's allocation.
class PartFunction {
 public:
  template <typename F>
  PartFunction(const F& f)  // NOLINT: implicit, so that run_parts takes lambdas
      : object_(&f), call_([](const void* object, int64_t part) { (*static_cast<const F*>(object))(part); }) {}
  void operator()(int64_t part) const { call_(object_, part); }

 private:
  const void* object_;
  void (*call_)(const void*, int64_t);
};

// Calls part(p) exactly once for each p in [0, parts) on up to at::get_num_threads() threads, this
// one included, and returns when all have returned. Parts are handed out in order to whichever
// thread is free, so more parts than threads balance uneven ones. The first exception a part
// throws is rethrown here (the other parts still run). Called from inside a part, or while another
// thread's call is running, the parts run here in order.
void run_parts(int64_t parts, PartFunction part, IdleWorkers idle = IdleWorkers::Sleep);

}  // namespace qnoise::runtime
