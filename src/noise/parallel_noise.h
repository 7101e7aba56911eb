#pragma once
// Quant-Noise over a whole contiguous float32 weight: the kernel table's row kernels
// (kernels/noise_kernels.h) spread over at::get_num_threads() threads.
#include <cstdint>

#include "kernels/noise_kernels.h"

namespace qnoise::kernels {

// out = weight with chosen blocks zeroed and the others multiplied by keep_scale.
void pq_noise(const float* weight, float* out, int64_t n_rows, int64_t row_length,
              int64_t block_size, const BlockMaskSampler& sampler, float keep_scale);

// out = weight with the values of chosen blocks replaced by their fake-quantized value, computed
// exactly as ScalarQuantizer does. Returns false when a row's range had to be found and the row
// holds NaN or infinity.
bool scalar_noise(const float* weight, float* out, int64_t n_rows, int64_t row_length,
                  int64_t block_size, const ScalarNoiseSpec& spec, const BlockMaskSampler& sampler);

// The input gradient of scalar_noise with one (per-tensor) qparams and blocks of 1, as
// scalar_noise_gradient_rows describes it.
void scalar_noise_gradient(const float* input, const float* grad, float* grad_in, int64_t n_rows,
                           int64_t row_length, AffineQParams qparams, int bits, const BlockMaskSampler& sampler);

}  // namespace qnoise::kernels

namespace qnoise {

// A seed for a noise draw from torch's default CPU generator, so that torch::manual_seed (and
// --seed) makes the noise reproducible.
uint64_t draw_noise_seed();

}  // namespace qnoise
