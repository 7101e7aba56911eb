#include "kernels/noise_kernels.h"

#include <algorithm>

namespace qnoise::kernels {

void fill_row_mask(const BlockMaskSampler& sampler, int64_t row_index, int64_t row_length,
                   int64_t block_size, int32_t* mask) {
  const int64_t blocks_per_row = row_length / block_size;
  for (int64_t j = 0; j < blocks_per_row; ++j) {
    const int32_t value = sampler.chosen(row_index * blocks_per_row + j) ? -1 : 0;
    std::fill(mask + j * block_size, mask + (j + 1) * block_size, value);
  }
}

void pq_noise_rows_portable(const RowRange& rows, const BlockMaskSampler& sampler, float keep_scale,
                            int32_t* mask) {
  for (int64_t r = 0; r < rows.n_rows; ++r) {
    const float* src = rows.weight + r * rows.row_length;
    float* dst = rows.out + r * rows.row_length;
    fill_row_mask(sampler, rows.first_row + r, rows.row_length, rows.block_size, mask);
    for (int64_t i = 0; i < rows.row_length; ++i) dst[i] = mask[i] ? 0.0f : src[i] * keep_scale;
  }
}

namespace {

// [min(row, 0), max(row, 0)]; false when the row holds NaN or infinity (x * 0 turns both into NaN).
bool row_range_portable(const float* row, int64_t length, float* lower, float* upper) {
  float low = 0.0f, high = 0.0f, probe = 0.0f;
  for (int64_t i = 0; i < length; ++i) {
    low = std::min(low, row[i]);
    high = std::max(high, row[i]);
    probe += row[i] * 0.0f;
  }
  *lower = low;
  *upper = high;
  return probe == 0.0f;
}

}  // namespace

bool scalar_noise_rows_portable(const RowRange& rows, const ScalarNoiseSpec& spec,
                                const BlockMaskSampler& sampler, int32_t* mask) {
  const auto quant_max = static_cast<float>((1 << spec.bits) - 1);
  for (int64_t r = 0; r < rows.n_rows; ++r) {
    const float* src = rows.weight + r * rows.row_length;
    float* dst = rows.out + r * rows.row_length;
    const int64_t row_index = rows.first_row + r;
    AffineQParams qparams;
    if (!row_qparams(src, rows.row_length, row_index, spec, row_range_portable, &qparams)) return false;
    fill_row_mask(sampler, row_index, rows.row_length, rows.block_size, mask);
    const float inverse_scale = 1.0f / qparams.scale;
    const auto zero_point = static_cast<float>(qparams.zero_point);
    for (int64_t i = 0; i < rows.row_length; ++i)
      dst[i] = mask[i] ? fake_quantize_value(src[i], inverse_scale, zero_point, quant_max, qparams.scale)
                       : src[i];
  }
  return true;
}

void scalar_noise_gradient_rows(const RowRange& rows, const float* grad, AffineQParams qparams, int bits,
                                const BlockMaskSampler& sampler, int32_t* mask) {
  const auto quant_max = static_cast<float>((1 << bits) - 1);
  const float inverse_scale = 1.0f / qparams.scale;
  const auto zero_point = static_cast<float>(qparams.zero_point);
  for (int64_t r = 0; r < rows.n_rows; ++r) {
    const int64_t offset = r * rows.row_length;
    const float* src = rows.weight + offset;
    const float* row_grad = grad + offset;
    float* dst = rows.out + offset;
    fill_row_mask(sampler, rows.first_row + r, rows.row_length, rows.block_size, mask);
    for (int64_t i = 0; i < rows.row_length; ++i) {
      const float code = round_half_even(src[i] * inverse_scale) + zero_point;
      const bool clamped = code < 0.0f || code > quant_max;
      dst[i] = mask[i] && clamped ? 0.0f : row_grad[i];
    }
  }
}

}  // namespace qnoise::kernels
