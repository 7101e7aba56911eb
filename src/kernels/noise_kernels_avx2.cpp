// AVX2 row kernel for scalar Quant-Noise. Compiled with -mavx2 -mfma and called only after a
// CPU check; every step rounds exactly like the portable kernel (no fma contraction, same
// rounding), so both give bit-identical weights.
#include <immintrin.h>

#include "kernels/noise_kernels.h"

namespace qnoise::kernels {

namespace {

// Pair hashes of pairs first_pair .. first_pair + 7: the vector form of
// BlockMaskSampler::pair_bits.
inline __m256i pair_bits(int64_t first_pair, const BlockMaskSampler& sampler) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i pair = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first_pair)), lane);
  __m256i x = _mm256_add_epi32(
      _mm256_mullo_epi32(pair, _mm256_set1_epi32(static_cast<int>(BlockMaskSampler::kIndexMultiplier))),
      _mm256_set1_epi32(static_cast<int>(sampler.key())));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(BlockMaskSampler::kMix1)));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(BlockMaskSampler::kMix2)));
  return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}

// mask[i] for one value per block (block_size 1): sixteen blocks from eight hashes.
void fill_row_mask_avx2(const BlockMaskSampler& sampler, int64_t row_index, int64_t row_length,
                        int64_t block_size, int32_t* mask) {
  if (block_size != 1) {  // one hash per block or pair of blocks: the portable fill is cheap enough
    fill_row_mask(sampler, row_index, row_length, block_size, mask);
    return;
  }
  const int64_t first = row_index * row_length;
  const __m256i threshold = _mm256_set1_epi32(static_cast<int>(sampler.threshold()));
  const __m256i low16 = _mm256_set1_epi32(0xFFFF);
  int64_t i = 0;
  if (first & 1) {  // start the vector loop on an even block: pairs then fill whole lanes
    mask[0] = sampler.chosen(first) ? -1 : 0;
    i = 1;
  }
  for (; i + 16 <= row_length; i += 16) {
    const __m256i bits = pair_bits((first + i) >> 1, sampler);
    const __m256i low = _mm256_and_si256(bits, low16), high = _mm256_srli_epi32(bits, 16);
    // Interleave to block order: (low0, high0, low1, high1, ...).
    const __m256i a = _mm256_unpacklo_epi32(low, high), b = _mm256_unpackhi_epi32(low, high);
    const __m256i first8 = _mm256_permute2x128_si256(a, b, 0x20);
    const __m256i second8 = _mm256_permute2x128_si256(a, b, 0x31);
    // Uniforms and threshold are below 2^17: the signed comparison is the unsigned one.
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(mask + i), _mm256_cmpgt_epi32(threshold, first8));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(mask + i + 8), _mm256_cmpgt_epi32(threshold, second8));
  }
  for (; i < row_length; ++i) mask[i] = sampler.chosen(first + i) ? -1 : 0;
}

// [min(row, 0), max(row, 0)]; false when the row holds NaN or infinity.
bool row_range(const float* row, int64_t length, float* lower, float* upper) {
  __m256 low = _mm256_setzero_ps(), high = _mm256_setzero_ps(), probe = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= length; i += 8) {
    const __m256 x = _mm256_loadu_ps(row + i);
    low = _mm256_min_ps(low, x);
    high = _mm256_max_ps(high, x);
    probe = _mm256_add_ps(probe, _mm256_mul_ps(x, _mm256_setzero_ps()));
  }
  alignas(32) float low_lanes[8], high_lanes[8], probe_lanes[8];
  _mm256_store_ps(low_lanes, low);
  _mm256_store_ps(high_lanes, high);
  _mm256_store_ps(probe_lanes, probe);
  float l = 0.0f, h = 0.0f, p = 0.0f;
  for (int k = 0; k < 8; ++k) {
    l = std::min(l, low_lanes[k]);
    h = std::max(h, high_lanes[k]);
    p += probe_lanes[k];
  }
  for (; i < length; ++i) {
    l = std::min(l, row[i]);
    h = std::max(h, row[i]);
    p += row[i] * 0.0f;
  }
  *lower = l;
  *upper = h;
  return p == 0.0f;
}

}  // namespace

void pq_noise_rows_avx2(const RowRange& rows, const BlockMaskSampler& sampler, float keep_scale,
                        int32_t* mask) {
  const __m256 v_keep = _mm256_set1_ps(keep_scale);
  const int64_t block_size = rows.block_size, blocks_per_row = rows.row_length / block_size;
  for (int64_t r = 0; r < rows.n_rows; ++r) {
    const float* src = rows.weight + r * rows.row_length;
    float* dst = rows.out + r * rows.row_length;
    if (block_size < 8) {  // several blocks per vector: blend with a mask of the row
      fill_row_mask_avx2(sampler, rows.first_row + r, rows.row_length, block_size, mask);
      int64_t i = 0;
      for (; i + 8 <= rows.row_length; i += 8) {
        const __m256 kept = _mm256_mul_ps(_mm256_loadu_ps(src + i), v_keep);
        const __m256 chosen = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mask + i)));
        _mm256_storeu_ps(dst + i, _mm256_blendv_ps(kept, _mm256_setzero_ps(), chosen));
      }
      for (; i < rows.row_length; ++i) dst[i] = mask[i] ? 0.0f : src[i] * keep_scale;
      continue;
    }
    // One hash per block, then whole vectors of the block zeroed or scaled.
    for (int64_t j = 0; j < blocks_per_row; ++j) {
      const float* block_src = src + j * block_size;
      float* block_dst = dst + j * block_size;
      const bool chosen = sampler.chosen((rows.first_row + r) * blocks_per_row + j);
      int64_t k = 0;
      for (; k + 8 <= block_size; k += 8)
        _mm256_storeu_ps(block_dst + k, chosen ? _mm256_setzero_ps()
                                               : _mm256_mul_ps(_mm256_loadu_ps(block_src + k), v_keep));
      for (; k < block_size; ++k) block_dst[k] = chosen ? 0.0f : block_src[k] * keep_scale;
    }
  }
}

bool scalar_noise_rows_avx2(const RowRange& rows, const ScalarNoiseSpec& spec,
                            const BlockMaskSampler& sampler, int32_t* mask) {
  const auto quant_max = static_cast<float>((1 << spec.bits) - 1);
  for (int64_t r = 0; r < rows.n_rows; ++r) {
    const float* src = rows.weight + r * rows.row_length;
    float* dst = rows.out + r * rows.row_length;
    const int64_t row_index = rows.first_row + r;
    AffineQParams qparams;
    if (!row_qparams(src, rows.row_length, row_index, spec, row_range, &qparams)) return false;
    fill_row_mask_avx2(sampler, row_index, rows.row_length, rows.block_size, mask);
    const float inverse_scale = 1.0f / qparams.scale;
    const auto zero_point = static_cast<float>(qparams.zero_point);
    const __m256 v_inverse = _mm256_set1_ps(inverse_scale), v_scale = _mm256_set1_ps(qparams.scale);
    const __m256 v_zero_point = _mm256_set1_ps(zero_point), v_max = _mm256_set1_ps(quant_max);
    int64_t i = 0;
    for (; i + 8 <= rows.row_length; i += 8) {
      const __m256 x = _mm256_loadu_ps(src + i);
      __m256 code = _mm256_round_ps(_mm256_mul_ps(x, v_inverse), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      code = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(code, v_zero_point), _mm256_setzero_ps()), v_max);
      const __m256 quantized = _mm256_mul_ps(_mm256_sub_ps(code, v_zero_point), v_scale);
      const __m256 chosen = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mask + i)));
      _mm256_storeu_ps(dst + i, _mm256_blendv_ps(x, quantized, chosen));
    }
    for (; i < rows.row_length; ++i)
      dst[i] = mask[i] ? fake_quantize_value(src[i], inverse_scale, zero_point, quant_max, qparams.scale)
                       : src[i];
  }
  return true;
}

}  // namespace qnoise::kernels
