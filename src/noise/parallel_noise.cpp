// pq_noise() and scalar_noise(): the kernel table's row kernels over every thread.
#include "noise/parallel_noise.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "kernels/kernel_table.h"

namespace qnoise::kernels {

namespace {
// Work per thread task, in weights: large enough to amortise scheduling.
constexpr int64_t kGrainWeights = 1 << 15;

// Runs row_kernel(rows, mask buffer) over all rows in parallel chunks.
template <typename RowKernel>
void for_row_chunks(const float* weight, float* out, int64_t n_rows, int64_t row_length,
                    int64_t block_size, const RowKernel& row_kernel) {
  const int64_t grain = std::max<int64_t>(1, kGrainWeights / row_length);
  at::parallel_for(0, n_rows, grain, [&](int64_t first_row, int64_t last_row) {
    std::vector<int32_t> mask(row_length);
    row_kernel(RowRange{weight + first_row * row_length, out + first_row * row_length, first_row,
                        last_row - first_row, row_length, block_size},
               mask.data());
  });
}

}  // namespace

void pq_noise(const float* weight, float* out, int64_t n_rows, int64_t row_length,
              int64_t block_size, const BlockMaskSampler& sampler, float keep_scale) {
  const auto rows_kernel = kernel_table().pq_noise_rows;
  for_row_chunks(weight, out, n_rows, row_length, block_size, [&](const RowRange& rows, int32_t* mask) {
    rows_kernel(rows, sampler, keep_scale, mask);
  });
}

bool scalar_noise(const float* weight, float* out, int64_t n_rows, int64_t row_length,
                  int64_t block_size, const ScalarNoiseSpec& spec, const BlockMaskSampler& sampler) {
  const auto rows_kernel = kernel_table().scalar_noise_rows;
  std::atomic<bool> finite{true};
  for_row_chunks(weight, out, n_rows, row_length, block_size, [&](const RowRange& rows, int32_t* mask) {
    if (!rows_kernel(rows, spec, sampler, mask)) finite = false;
  });
  return finite;
}

void scalar_noise_gradient(const float* input, const float* grad, float* grad_in, int64_t n_rows,
                           int64_t row_length, AffineQParams qparams, int bits, const BlockMaskSampler& sampler) {
  const int64_t grain = std::max<int64_t>(1, kGrainWeights / row_length);
  at::parallel_for(0, n_rows, grain, [&](int64_t first_row, int64_t last_row) {
    std::vector<int32_t> mask(row_length);
    const int64_t offset = first_row * row_length;
    scalar_noise_gradient_rows(RowRange{input + offset, grad_in + offset, first_row, last_row - first_row,
                                        row_length, 1},
                               grad + offset, qparams, bits, sampler, mask.data());
  });
}

}  // namespace qnoise::kernels

namespace qnoise {

uint64_t draw_noise_seed() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get<at::CPUGeneratorImpl>()->random64();
}

}  // namespace qnoise
