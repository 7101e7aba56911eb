#include "noise/noise_kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace qnoise::kernels {

namespace {
// Work per thread task, in weights: large enough to amortise scheduling.
constexpr int64_t kGrainWeights = 1 << 15;

// Round to nearest, ties to even (as torch.round), without a libm call: adding and subtracting
// 1.5 * 2^23 leaves the rounded value for |x| < 2^22. Larger |x| stay far outside the code range,
// so the clamp that follows still gives the right code.
inline float round_half_even(float x) {
  constexpr float kMagic = 12582912.0f;
  // Compilers may not fold this without -ffast-math, which this project never uses.
  return (x + kMagic) - kMagic;
}
}  // namespace

void pq_noise(const float* weight, float* out, int64_t n_blocks, int64_t block_size,
              const BlockMaskSampler& sampler, float keep_scale) {
  const int64_t n_groups = (n_blocks + 3) / 4;
  const int64_t grain = std::max<int64_t>(1, kGrainWeights / (4 * block_size));
  at::parallel_for(0, n_groups, grain, [&](int64_t first_group, int64_t last_group) {
    for (int64_t group = first_group; group < last_group; ++group) {
      const uint64_t bits = sampler.group_bits(group);
      const int64_t last_block = std::min(4 * group + 4, n_blocks);
      for (int64_t block = 4 * group; block < last_block; ++block) {
        const float* src = weight + block * block_size;
        float* dst = out + block * block_size;
        if (sampler.chosen_in_group(bits, block)) {
          std::fill(dst, dst + block_size, 0.0f);
        } else {
          for (int64_t k = 0; k < block_size; ++k) dst[k] = src[k] * keep_scale;
        }
      }
    }
  });
}

void scalar_noise(const float* weight, float* out, int64_t n_rows, int64_t row_length,
                  int64_t block_size, const RowQParams& qparams, const BlockMaskSampler& sampler) {
  const int64_t blocks_per_row = row_length / block_size;
  const int64_t grain = std::max<int64_t>(1, kGrainWeights / row_length);
  at::parallel_for(0, n_rows, grain, [&](int64_t first_row, int64_t last_row) {
    for (int64_t row = first_row; row < last_row; ++row) {
      const int64_t channel = qparams.per_tensor ? 0 : row;
      const float scale = qparams.scale[channel];
      const float inverse_scale = 1.0f / scale;
      const auto zero_point = static_cast<float>(qparams.zero_point[channel]);
      const float* src = weight + row * row_length;
      float* dst = out + row * row_length;
      uint64_t bits = 0;
      for (int64_t j = 0; j < blocks_per_row; ++j) {
        const int64_t block = row * blocks_per_row + j;
        if (j == 0 || (block & 3) == 0) bits = sampler.group_bits(block >> 2);
        const float* block_src = src + j * block_size;
        float* block_dst = dst + j * block_size;
        if (!sampler.chosen_in_group(bits, block)) {
          std::copy(block_src, block_src + block_size, block_dst);
          continue;
        }
        for (int64_t k = 0; k < block_size; ++k) {
          float code = round_half_even(block_src[k] * inverse_scale) + zero_point;
          code = std::min(std::max(code, 0.0f), qparams.quant_max);
          block_dst[k] = (code - zero_point) * scale;
        }
      }
    }
  });
}

}  // namespace qnoise::kernels
