// AVX2 int4 x fixed-point activations (int4_fixed_point.h). Compiled with -mavx2 -mfma and called
// only after cpu_has_avx2_fma(); internal linkage and no standard-library templates, as in
// scalar_linear_kernels_avx2.cpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/int4_fixed_point.h"
#include "kernels/simd_helpers.h"

namespace qnoise::kernels {

namespace {

constexpr int32_t kBaseSquared = kFixedDigitBase * kFixedDigitBase;
// Inputs between flushes of the int32 accumulators: d1's sums need no flush below
// kMaxFixedPointInputs, the 254 d2 + d3 sums grow by at most 15 * (127 * 254 + 127) = 485,775 per
// input, and 4096 + 96 (the 32-input tail) inputs' worth fit int32, all lanes added.
constexpr int64_t kFlushInputs = 4096;
static_assert((kFlushInputs + 96) * 15 * (127 * kFixedDigitBase + 127) < (int64_t{1} << 31), "int32 flush");
// Inputs summed in int16 before widening: two lines, eight vpmaddubsw results of at most
// 2 * 15 * 127 in each int16 lane.
constexpr int64_t kSumInputs = 2 * kFixedPointLineInputs;
static_assert(8 * 2 * 15 * 127 < 32768, "two lines' int4 x digit products must fit int16");
static_assert(kFlushInputs % kSumInputs == 0, "the flush ends a run of int16 sums");

// Byte offset of d1 for the 16 inputs from i (a multiple of 16), and the distance to d2 and d3.
struct DigitPlace {
  int64_t offset, stride;
};
inline DigitPlace digit_place(int64_t i, int64_t lines_end) {
  if (i < lines_end) {
    const int64_t piece = i % 64 / 16;  // 0..15, 16..31, 32..47, 48..63
    return {i / 64 * 192 + (piece & 1) * 32 + (piece >> 1) * 16, 64};
  }
  const int64_t t = i - lines_end;
  return {3 * lines_end + t / 32 * 96 + t % 32, 32};
}

// 16 int32 values in [-127, 127] to 16 bytes in order.
inline __m128i pack16(__m256i a, __m256i b) {
  const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
  return _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
}

// The levels' digits: d1 = round(X / 254^2) and d2 = round(r / 254) of the rest r, by float
// multiplies (exact operands below 2^23; off by at most 1.5e-5 before rounding, which keeps
// |r| <= 32258 and so |d2|, |d3| <= 127), d3 = r - 254 d2 exactly.
struct Digits {
  __m256i d1, d2, d3;
};
inline Digits digits_of(__m256i level) {
  const __m256 inverse_base_squared = _mm256_set1_ps(1.0f / kBaseSquared);
  const __m256 inverse_base = _mm256_set1_ps(1.0f / kFixedDigitBase);
  const __m256i d1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(level), inverse_base_squared));
  const __m256i rest = _mm256_sub_epi32(level, _mm256_mullo_epi32(d1, _mm256_set1_epi32(kBaseSquared)));
  const __m256i d2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(rest), inverse_base));
  const __m256i d3 = _mm256_sub_epi32(rest, _mm256_mullo_epi32(d2, _mm256_set1_epi32(kFixedDigitBase)));
  return {d1, d2, d3};
}

// kRows rows (1 or 2): per row three int16 sums, two int32 accumulators and the current 64
// inputs' low and high nibbles, 14 of the 16 registers at two rows; each digit vector is loaded
// once for both. Faster than widening the sums every line, and than one row at a time with the
// digits as memory operands (docs/kernels.md, "int4 with float activations: fixed point").
template <int kRows>
void fixed_point_rows(const ScalarLinearWeight& w, const int8_t* digits, const int32_t* levels, int64_t level_sum,
                      float step, int64_t row, float* y) {
  const uint8_t* codes[kRows];
  int64_t dot[kRows];
  __m256i acc_d1[kRows], acc_d23[kRows];  // sum q d1; sum q (254 d2 + d3)
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    codes[r] = w.codes + (row + r) * w.row_bytes;
    dot[r] = 0;
    acc_d1[r] = acc_d23[r] = _mm256_setzero_si256();
  }
  const __m256i ones = _mm256_set1_epi16(1), base = _mm256_set1_epi16(kFixedDigitBase);
  auto load = [](const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); };
  auto flush = [&] {
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      dot[r] += int64_t{kBaseSquared} * horizontal_sum(acc_d1[r]) + horizontal_sum(acc_d23[r]);
      acc_d1[r] = acc_d23[r] = _mm256_setzero_si256();
    }
  };
  // Widens a digit's int16 sums into the row's accumulators.
  auto widen = [&](int r, __m256i s1, __m256i s2, __m256i s3) {
    acc_d1[r] = _mm256_add_epi32(acc_d1[r], _mm256_madd_epi16(s1, ones));
    const __m256i d23 = _mm256_add_epi32(_mm256_madd_epi16(s2, base), _mm256_madd_epi16(s3, ones));
    acc_d23[r] = _mm256_add_epi32(acc_d23[r], d23);
  };
  const int64_t ahead = kRowsPerStep * w.row_bytes;
  const int64_t lines_end = fixed_point_lines_end(w.in);
  int64_t i = 0;
  while (i < lines_end) {
    const int64_t block_end = i + kFlushInputs < lines_end ? i + kFlushInputs : lines_end;
    while (i < block_end) {
      const int64_t sums_end = i + kSumInputs < block_end ? i + kSumInputs : block_end;
      __m256i sums[kRows][3];
      QNOISE_UNROLL
      for (int r = 0; r < kRows; ++r) sums[r][0] = sums[r][1] = sums[r][2] = _mm256_setzero_si256();
#pragma GCC unroll 1
      for (int64_t u = i; u < sums_end; u += 64) {
        if (u % kFixedPointLineInputs == 0) {
          QNOISE_UNROLL
          for (int r = 0; r < kRows; ++r) prefetch(codes[r] + ahead + u / 2);
        }
        const int8_t* d = digits + 3 * u;
        Int4Nibbles q[kRows];
        QNOISE_UNROLL
        for (int r = 0; r < kRows; ++r) q[r] = int4_line_nibbles(codes[r] + u / 2);
        // Each digit vector loaded once for the rows.
        QNOISE_UNROLL
        for (int k = 0; k < 3; ++k) {
          const __m256i d_low = load(d + 64 * k), d_high = load(d + 64 * k + 32);
          QNOISE_UNROLL
          for (int r = 0; r < kRows; ++r) {
            sums[r][k] = _mm256_add_epi16(sums[r][k], _mm256_maddubs_epi16(q[r].low, d_low));
            sums[r][k] = _mm256_add_epi16(sums[r][k], _mm256_maddubs_epi16(q[r].high, d_high));
          }
        }
      }
      QNOISE_UNROLL
      for (int r = 0; r < kRows; ++r) widen(r, sums[r][0], sums[r][1], sums[r][2]);
      i = sums_end;
    }
    if (i < lines_end) flush();
  }
  // 32-input steps: a 16-byte load gives the codes in input order, as are these digits.
  for (; i + kInt4Chunk <= w.in; i += kInt4Chunk) {
    const int8_t* d = digits + 3 * i;
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const __m256i q = int4_chunk_codes(codes[r] + i / 2);
      widen(r, _mm256_maddubs_epi16(q, load(d)), _mm256_maddubs_epi16(q, load(d + 32)),
            _mm256_maddubs_epi16(q, load(d + 64)));
    }
  }
  flush();
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    for (int64_t t = i; t < w.in; ++t) dot[r] += static_cast<int64_t>(w.code(row + r, t)) * levels[t];
    y[row + r] = fixed_point_output(w, row + r, dot[r], level_sum, step);
  }
}

}  // namespace

bool fixed_point_activations_avx2(const float* x, int64_t n, int32_t* levels, int8_t* digits, float* step,
                                  int64_t* level_sum) {
  // The reference's arithmetic eight at a time (vroundps in the default rounding mode is nearbyint).
  float largest = 0.0f;
  if (!largest_magnitude(x, n, &largest)) return false;
  *step = largest / kFixedLevels;
  const float inverse = largest > 0.0f ? kFixedLevels / largest : 0.0f;
  const __m256 inverse8 = _mm256_set1_ps(inverse);
  const __m256 top = _mm256_set1_ps(kFixedLevels), bottom = _mm256_set1_ps(-kFixedLevels);
  __m256i sum4 = _mm256_setzero_si256();  // int64 lanes: 8.2M per level overflows int32 lanes
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 level = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), inverse8),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i l = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(level, bottom), top));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(levels + i), l);
    sum4 = _mm256_add_epi64(sum4, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(l)));
    sum4 = _mm256_add_epi64(sum4, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(l, 1)));
  }
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sum4);
  int64_t sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) {
    levels[i] = static_cast<int32_t>(clamped_level(x[i] * inverse, kFixedLevels));
    sum += levels[i];
  }
  *level_sum = sum;
  const int64_t lines_end = fixed_point_lines_end(n);
  for (i = 0; i + 16 <= n / kInt4Chunk * kInt4Chunk; i += 16) {
    const Digits a = digits_of(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(levels + i)));
    const Digits b = digits_of(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(levels + i + 8)));
    const DigitPlace place = digit_place(i, lines_end);
    int8_t* out = digits + place.offset;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), pack16(a.d1, b.d1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + place.stride), pack16(a.d2, b.d2));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * place.stride), pack16(a.d3, b.d3));
  }
  return true;
}

void int4_fixed_point_matvec_avx2(const ScalarLinearWeight& w, const int8_t* digits, const int32_t* levels,
                                  int64_t level_sum, float step, int64_t row_begin, int64_t row_end, float* y) {
  for_row_steps(row_begin, row_end, [&](auto rows, int64_t row) {
    if constexpr (decltype(rows)::value == 1) {
      fixed_point_rows<1>(w, digits, levels, level_sum, step, row, y);
    } else {
      for (int r = 0; r < decltype(rows)::value; r += 2)
        fixed_point_rows<2>(w, digits, levels, level_sum, step, row + r, y);
    }
  });
}

}  // namespace qnoise::kernels
