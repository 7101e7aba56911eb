#pragma once
// The fixture of the packed-layer tests: restores the kernel path, activation precision, thread
// count and tuning a test changes, and splits even small shapes over threads.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <vector>

#include "qnoise/packed_linear.h"
#include "quant/cpu_features.h"
#include "runtime/linear_tuning.h"

// Every kernel path this CPU runs, reference first.
inline std::vector<qnoise::KernelPath> available_kernel_paths() {
  std::vector<qnoise::KernelPath> paths{qnoise::KernelPath::Reference};
  if (qnoise::kernels::cpu_has_avx2_fma()) paths.push_back(qnoise::KernelPath::Avx2);
  if (qnoise::kernels::cpu_has_avx512_vnni_vbmi()) paths.push_back(qnoise::KernelPath::Avx512);
  return paths;
}

class PackedLinearTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_tuning_ = qnoise::runtime::linear_tuning();
    saved_threads_ = at::get_num_threads();
    // The defaults with sleeping workers whatever this process's environment (ctest runs these
    // tests again with QNOISE_WORKER_WAIT=spin), then split even the small test shapes over
    // threads, so both code paths of the driver run.
    qnoise::runtime::linear_tuning() = qnoise::runtime::LinearTuning{};
    qnoise::runtime::linear_tuning().min_work_per_thread = 1;
  }
  void TearDown() override {
    qnoise::runtime::linear_tuning() = saved_tuning_;
    at::set_num_threads(saved_threads_);
    qnoise::set_kernel_path(qnoise::KernelPath::Auto);
    qnoise::set_int8_activations(false);
  }
  qnoise::runtime::LinearTuning saved_tuning_;
  int saved_threads_ = 1;
};
