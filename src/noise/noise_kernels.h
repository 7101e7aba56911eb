#pragma once
// Fused CPU kernels for Quant-Noise: draw the mask and write the noisy weight in one pass over a
// contiguous float32 weight, so the noise costs about one copy of the weight per forward pass.
#include <cstdint>

#include "noise/block_mask.h"

namespace qnoise::kernels {

// out = weight with chosen blocks zeroed and the others multiplied by keep_scale.
void pq_noise(const float* weight, float* out, int64_t n_blocks, int64_t block_size,
              const BlockMaskSampler& sampler, float keep_scale);

// Per-row affine quantization parameters (one shared row when per_tensor).
struct RowQParams {
  const float* scale;
  const int32_t* zero_point;
  bool per_tensor;
  float quant_max;
};

// out = weight with the values of chosen blocks replaced by (clamp(round(w / scale) + zp) - zp) *
// scale, computed exactly as ScalarQuantizer does (multiplying by the float reciprocal).
void scalar_noise(const float* weight, float* out, int64_t n_rows, int64_t row_length,
                  int64_t block_size, const RowQParams& qparams, const BlockMaskSampler& sampler);

}  // namespace qnoise::kernels
