#pragma once
// Fused CPU kernels for Quant-Noise: draw the mask and write the noisy weight in one pass over a
// contiguous float32 weight, so the noise costs about one copy of the weight per forward pass.
// No torch in this header: the AVX2 versions are compiled with their own flags.
#include <cstdint>

#include "kernels/block_mask.h"
#include "kernels/affine_qparams.h"

namespace qnoise::kernels {

// A block of rows of the weight: weight and out point at row `first_row`.
struct RowRange {
  const float* weight;
  float* out;
  int64_t first_row;
  int64_t n_rows;
  int64_t row_length;
  int64_t block_size;
};

struct ScalarNoiseSpec {
  int bits = 8;
  bool symmetric = false;
  // Given quantization parameters (one per row, or one in all when per_tensor); when null each
  // row's min-max range is found inside the kernel while the row is in cache.
  const AffineQParams* qparams = nullptr;
  bool per_tensor = false;
};

// The row kernels behind pq_noise and scalar_noise (noise/parallel_noise.h; tests check that each
// pair agrees). `mask`
// has room for one int32 per value of a row.
void pq_noise_rows_portable(const RowRange& rows, const BlockMaskSampler& sampler, float keep_scale,
                            int32_t* mask);
void pq_noise_rows_avx2(const RowRange& rows, const BlockMaskSampler& sampler, float keep_scale,
                        int32_t* mask);
bool scalar_noise_rows_portable(const RowRange& rows, const ScalarNoiseSpec& spec,
                                const BlockMaskSampler& sampler, int32_t* mask);
bool scalar_noise_rows_avx2(const RowRange& rows, const ScalarNoiseSpec& spec,
                            const BlockMaskSampler& sampler, int32_t* mask);

// The input gradient of scalar noise with per-tensor qparams, for activations: grad_in = grad,
// except 0 where a chosen value's code was clamped (fake quantization's straight-through
// estimator). rows.weight is the noised input, rows.out the input gradient; `grad` the output
// gradient, laid out as the input. The mask is redrawn from the sampler, as the forward drew it.
void scalar_noise_gradient_rows(const RowRange& rows, const float* grad, AffineQParams qparams, int bits,
                                const BlockMaskSampler& sampler, int32_t* mask);

// (clamp(round(x / scale) + zp, 0, quant_max) - zp) * scale, multiplying by the reciprocal.
QNOISE_ALWAYS_INLINE float fake_quantize_value(float x, float inverse_scale, float zero_point,
                                               float quant_max, float scale) {
  const float code = std::min(std::max(round_half_even(x * inverse_scale) + zero_point, 0.0f), quant_max);
  return (code - zero_point) * scale;
}

// A row's quantization parameters: the given ones, or those of its range [min(w, 0), max(w, 0)]
// as found by find_range(row, length, &lower, &upper), which returns false on NaN or infinity.
template <typename FindRange>
QNOISE_ALWAYS_INLINE bool row_qparams(const float* row, int64_t length, int64_t row_index,
                                      const ScalarNoiseSpec& spec, FindRange find_range,
                                      AffineQParams* qparams) {
  if (spec.qparams != nullptr) {
    *qparams = spec.qparams[spec.per_tensor ? 0 : row_index];
    return true;
  }
  float lower, upper;
  if (!find_range(row, length, &lower, &upper)) return false;
  *qparams = qparams_for_range(lower, upper, spec.bits, spec.symmetric);
  return true;
}

// mask[i] = -1 when value i of row `row_index` lies in a chosen block, else 0.
void fill_row_mask(const BlockMaskSampler& sampler, int64_t row_index, int64_t row_length,
                   int64_t block_size, int32_t* mask);

}  // namespace qnoise::kernels
