// AVX2+FMA int8 / int4 matrix-vector kernels. Compiled with -mavx2 -mfma and called only after
// cpu_has_avx2_fma(), so everything here has internal linkage and no standard-library templates
// are instantiated (a weak symbol compiled with AVX2 could replace the portable copy).
//
// Four rows at a time share each activation load; a code reaches float in two instructions
// (vpmovzxbd from memory, vcvtdq2ps) and is multiplied in the FMA. Zero points are applied once
// per row through x_sum, scales once per row at the end.
#include <immintrin.h>

#include <cstdint>

#include "kernels/scalar_linear_kernels.h"
#include "kernels/simd_helpers.h"

namespace qnoise::kernels {

namespace {

inline __m256 codes8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

template <int kRows>
void int8_rows(const ScalarLinearWeight& w, const float* x, float x_sum, int64_t row, float* y) {
  const uint8_t* codes[kRows];
  __m256 acc[kRows][2];
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    codes[r] = w.codes + (row + r) * w.row_bytes;
    acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  }
  const int64_t ahead = kRowsPerStep * w.row_bytes;
  auto step = [&](int64_t i) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      acc[r][0] = _mm256_fmadd_ps(codes8(codes[r] + i), x0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(codes8(codes[r] + i + 8), x1, acc[r][1]);
    }
  };
  int64_t i = 0;
  for (; i + kLineBytes <= w.in; i += kLineBytes) {
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) prefetch(codes[r] + ahead + i);
    QNOISE_UNROLL
    for (int u = 0; u < kLineBytes; u += 16) step(i + u);
  }
  for (; i + 16 <= w.in; i += 16) step(i);
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    float sum = horizontal_sum(_mm256_add_ps(acc[r][0], acc[r][1]));
    for (int64_t t = i; t < w.in; ++t) sum += static_cast<float>(codes[r][t]) * x[t];
    y[row + r] = w.scale[row + r] * (sum - w.zero_point[row + r] * x_sum);
  }
}

template <int kRows>
void int4_rows(const ScalarLinearWeight& w, const float* x, float x_sum, int64_t row, float* y) {
  const uint8_t* codes[kRows];
  __m256 acc[kRows][2];
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    codes[r] = w.codes + (row + r) * w.row_bytes;
    acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  }
  const __m256i low_nibble = _mm256_set1_epi32(0x0F);
  const int64_t ahead = kRowsPerStep * w.row_bytes;
  auto step = [&](int64_t i) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    const __m256 x2 = _mm256_loadu_ps(x + i + 16), x3 = _mm256_loadu_ps(x + i + 24);
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const uint8_t* chunk = codes[r] + i / 2;
      // Bytes 0..7 hold inputs 0..7 (low nibbles) and 16..23 (high); bytes 8..15 the rest.
      const __m256i b0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(chunk)));
      const __m256i b1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(chunk + 8)));
      acc[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b0, low_nibble)), x0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b1, low_nibble)), x1, acc[r][1]);
      acc[r][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b0, 4)), x2, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b1, 4)), x3, acc[r][1]);
    }
  };
  int64_t i = 0;
  constexpr int64_t kLineInputs = 2 * kLineBytes;
  for (; i + kLineInputs <= w.in; i += kLineInputs) {
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) prefetch(codes[r] + ahead + i / 2);
    QNOISE_UNROLL
    for (int u = 0; u < kLineInputs; u += kInt4Chunk) step(i + u);
  }
  for (; i + kInt4Chunk <= w.in; i += kInt4Chunk) step(i);
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    float sum = horizontal_sum(_mm256_add_ps(acc[r][0], acc[r][1]));
    for (int64_t t = i; t < w.in; ++t) sum += static_cast<float>(w.code(row + r, t)) * x[t];
    y[row + r] = w.scale[row + r] * (sum - w.zero_point[row + r] * x_sum);
  }
}

// Int8 activations: 32 codes times 32 activations in two instructions (vpmaddubsw: u8 x s8, pairs
// added in int16; vpmaddwd by ones: pairs of those into int32), four rows sharing each load of xq.
// int4 codes: one 16-byte load holds 32 inputs as low nibbles (0..15) and high nibbles (16..31),
// so masking and shifting gives the 32 codes in input order for the same vpmaddubsw.
template <int kBits>
inline __m256i codes32(const uint8_t* row, int64_t i) {
  if constexpr (kBits == 8) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i));
  } else {
    return int4_chunk_codes(row + i / 2);
  }
}

template <int kBits, int kRows>
void int8_activation_rows(const ScalarLinearWeight& w, const int8_t* xq, int32_t xq_sum, float x_scale, int64_t row,
                          float* y) {
  const uint8_t* codes[kRows];
  __m256i acc[kRows];
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    codes[r] = w.codes + (row + r) * w.row_bytes;
    acc[r] = _mm256_setzero_si256();
  }
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t ahead = kRowsPerStep * w.row_bytes;
  auto step = [&](int64_t i) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + i));
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r)
      acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(_mm256_maddubs_epi16(codes32<kBits>(codes[r], i), x), ones));
  };
  // int4, a line at a time: one 32-byte load holds two chunks, inputs 0..15 and 32..47 in its low
  // nibbles and 16..31 and 48..63 in its high ones, so the activations are regrouped to match (two
  // lane permutes shared by the rows) instead of each row's codes; and 4-bit codes times 7-bit
  // activations leave room to add a line's products in int16 (4 * 2 * 15 * 63 < 2^15; tested at
  // that bound) before widening them. 16 operations per row for 128 inputs where 32-input steps
  // took 32 (docs/kernels.md, "int8 / int4 weights").
  static_assert(4 * 2 * 15 * kActivationLevels < 32768, "a line's int4 products must fit int16");
  auto int4_line = [&](int64_t i) {
    __m256i sums[kRows];
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) sums[r] = _mm256_setzero_si256();
    // Not unrolled: both steps' activations live at once made GCC spill the sums (perf).
#pragma GCC unroll 1
    for (int u = 0; u < 128; u += 64) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + i + u));
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + i + u + 32));
      const __m256i x_low = _mm256_permute2x128_si256(a, b, 0x20), x_high = _mm256_permute2x128_si256(a, b, 0x31);
      QNOISE_UNROLL
      for (int r = 0; r < kRows; ++r) {
        const Int4Nibbles q = int4_line_nibbles(codes[r] + (i + u) / 2);
        sums[r] = _mm256_add_epi16(sums[r], _mm256_maddubs_epi16(q.low, x_low));
        sums[r] = _mm256_add_epi16(sums[r], _mm256_maddubs_epi16(q.high, x_high));
      }
    }
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(sums[r], ones));
  };
  constexpr int64_t kLineInputs = kLineBytes * 8 / kBits;  // inputs per 64-byte line of codes
  int64_t i = 0;
  for (; i + kLineInputs <= w.in; i += kLineInputs) {
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) prefetch(codes[r] + ahead + i * kBits / 8);
    if constexpr (kBits == 4) {
      int4_line(i);
    } else {
      QNOISE_UNROLL
      for (int u = 0; u < kLineInputs; u += 32) step(i + u);
    }
  }
  for (; i + 32 <= w.in; i += 32) step(i);
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    int32_t dot = horizontal_sum(acc[r]);
    for (int64_t t = i; t < w.in; ++t) dot += static_cast<int32_t>(w.code(row + r, t)) * xq[t];
    const int64_t o = row + r;
    y[o] = int8_activation_output(w, o, dot, xq_sum, x_scale);
  }
}

}  // namespace

void scalar_matvec_avx2(const ScalarLinearWeight& w, const float* x, float x_sum, int64_t row_begin,
                        int64_t row_end, float* y) {
  for_row_steps(row_begin, row_end, [&](auto rows, int64_t row) {
    if (w.bits == 8)
      int8_rows<decltype(rows)::value>(w, x, x_sum, row, y);
    else
      int4_rows<decltype(rows)::value>(w, x, x_sum, row, y);
  });
}

void int8_activation_matvec_avx2(const ScalarLinearWeight& w, const int8_t* xq, int32_t xq_sum, float x_scale,
                                 int64_t row_begin, int64_t row_end, float* y) {
  for_row_steps(row_begin, row_end, [&](auto rows, int64_t row) {
    if (w.bits == 8)
      int8_activation_rows<8, decltype(rows)::value>(w, xq, xq_sum, x_scale, row, y);
    else
      int8_activation_rows<4, decltype(rows)::value>(w, xq, xq_sum, x_scale, row, y);
  });
}

int32_t quantize_activations_avx2(const float* x, int64_t n, int8_t* xq, float* x_scale) {
  // The reference's arithmetic, eight at a time: max |x|, one float multiply by 63 / max and
  // round-to-nearest-even (vroundps in the default rounding mode is nearbyint), so the levels match.
  float largest = 0.0f;
  const bool finite = largest_magnitude(x, n, &largest);
  if (!finite) {
    *x_scale = __builtin_nanf("");
    for (int64_t t = 0; t < n; ++t) xq[t] = 0;
    return 0;
  }
  *x_scale = largest / kActivationLevels;
  const float inverse = largest > 0.0f ? kActivationLevels / largest : 0.0f;
  const __m256 inverse8 = _mm256_set1_ps(inverse);
  const __m256 top = _mm256_set1_ps(kActivationLevels), bottom = _mm256_set1_ps(-kActivationLevels);
  __m256i sum8 = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 level = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), inverse8),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    level = _mm256_min_ps(_mm256_max_ps(level, bottom), top);
    const __m256i levels = _mm256_cvttps_epi32(level);
    sum8 = _mm256_add_epi32(sum8, levels);
    const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(levels), _mm256_extracti128_si256(levels, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(xq + i), _mm_packs_epi16(words, words));
  }
  int32_t sum = horizontal_sum(sum8);
  for (; i < n; ++i) {
    xq[i] = static_cast<int8_t>(clamped_level(x[i] * inverse, kActivationLevels));
    sum += xq[i];
  }
  return sum;
}

void scalar_decode_rows_avx2(const ScalarLinearWeight& w, int64_t row_begin, int64_t row_end, float* out) {
  const __m256i low_nibble = _mm256_set1_epi32(0x0F);
  for (int64_t o = row_begin; o < row_end; ++o) {
    const uint8_t* codes = w.codes + o * w.row_bytes;
    float* row = out + (o - row_begin) * w.in;
    const __m256 zero_point = _mm256_set1_ps(w.zero_point[o]), scale = _mm256_set1_ps(w.scale[o]);
    int64_t i = 0;
    if (w.bits == 8) {
      for (; i + 8 <= w.in; i += 8)
        _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_sub_ps(codes8(codes + i), zero_point), scale));
    } else {
      for (; i + kInt4Chunk <= w.in; i += kInt4Chunk) {
        const uint8_t* chunk = codes + i / 2;
        QNOISE_UNROLL
        for (int half = 0; half < 2; ++half) {
          const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(chunk + 8 * half)));
          const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(b, low_nibble));
          const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
          _mm256_storeu_ps(row + i + 8 * half, _mm256_mul_ps(_mm256_sub_ps(lo, zero_point), scale));
          _mm256_storeu_ps(row + i + 16 + 8 * half, _mm256_mul_ps(_mm256_sub_ps(hi, zero_point), scale));
        }
      }
    }
    for (; i < w.in; ++i) row[i] = (static_cast<float>(w.code(o, i)) - w.zero_point[o]) * w.scale[o];
  }
}

}  // namespace qnoise::kernels
