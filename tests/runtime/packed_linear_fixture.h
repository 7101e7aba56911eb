#pragma once
// The packed-layer tests' helpers: the kernel paths this CPU runs, the options the tests build their
// layers with (splitting even small shapes over threads), and a fixture that restores the thread
// count a test changes.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu_features.h"
#include "qnoise/packed_linear.h"
#include "qnoise/runtime_options.h"

// Every kernel path this CPU runs, reference first.
inline std::vector<qnoise::KernelPath> available_kernel_paths() {
  std::vector<qnoise::KernelPath> paths{qnoise::KernelPath::Reference};
  if (qnoise::kernels::cpu_has_avx2_fma()) paths.push_back(qnoise::KernelPath::Avx2);
  if (qnoise::kernels::cpu_has_avx512_vnni_vbmi()) paths.push_back(qnoise::KernelPath::Avx512);
  return paths;
}

// Whether this run asks for spinning workers: ctest runs these tests a second time with
// QNOISE_WORKER_WAIT=spin (`qnoise generate`'s mode). The programs read the variable through
// runtime_options_from_environment (process_tuning.h), a layer above the runtime these tests link.
inline bool spinning_workers_in_this_run() {
  const char* wait = std::getenv("QNOISE_WORKER_WAIT");
  return wait != nullptr && std::strcmp(wait, "spin") == 0;
}

// The options the tests build their layers with: `path` and `int8_activations`, the default tuning
// (with spinning workers when this run asks for them), and min_work_per_thread = 1, so that even
// the small test shapes are split over threads and both code paths of the drivers run.
inline qnoise::RuntimeOptions options_for(qnoise::KernelPath path, bool int8_activations = false) {
  qnoise::RuntimeOptions options;
  options.kernel_path = path;
  options.int8_activations = int8_activations;
  if (spinning_workers_in_this_run()) options.tuning.use_spinning_workers();
  options.tuning.min_work_per_thread = 1;
  return options;
}

class PackedLinearTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_threads_ = at::get_num_threads(); }
  void TearDown() override { at::set_num_threads(saved_threads_); }
  int saved_threads_ = 1;
};
