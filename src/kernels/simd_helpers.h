#pragma once
// Helpers shared by the SIMD kernel files. Include only from files compiled with at least
// -mavx2 -mfma; everything here has internal linkage (an unnamed namespace), so each kernel file
// gets its own copy built with its own flags and none can stand in for another's.
#include <immintrin.h>

#include <cstdint>

#define QNOISE_UNROLL _Pragma("GCC unroll 16")

namespace qnoise::kernels {
namespace {

// int8 / int4 row kernels: rows per step (sharing each activation load), and the prefetch. A
// 4096-input int8 row is one 4 KB page, and hardware prefetchers stop at page ends: without
// software prefetch of the next rows the kernel read codes from DRAM far slower than sgemv reads
// floats (docs/kernels.md, "Batch < 8, float activations"). Each step prefetches the same line of
// the rows kRowsPerStep further on.
constexpr int kRowsPerStep = 4;
constexpr int kLineBytes = 64;

// A row count as a type (decltype(count)::value), for the generic lambdas of for_row_steps; our
// own rather than std::integral_constant, so that no standard-library template is built here.
template <int kRows>
struct RowCount {
  static constexpr int value = kRows;
};

// Runs rows(RowCount<kRowsPerStep>{}, row) over [row_begin, row_end) in steps of kRowsPerStep
// rows, then rows(RowCount<1>{}, row) for the rest.
template <typename Rows>
inline void for_row_steps(int64_t row_begin, int64_t row_end, const Rows& rows) {
  int64_t row = row_begin;
  for (; row + kRowsPerStep <= row_end; row += kRowsPerStep) rows(RowCount<kRowsPerStep>{}, row);
  for (; row < row_end; ++row) rows(RowCount<1>{}, row);
}

inline void prefetch(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }

inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float horizontal_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

// nearbyint in the current rounding mode, as the references' std::nearbyint.
inline float round_scalar(float v) {
  return _mm_cvtss_f32(_mm_round_ss(_mm_setzero_ps(), _mm_set_ss(v), _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC));
}

// A scalar activation's level: round_scalar(scaled) clamped to [-top, top].
inline float clamped_level(float scaled, float top) {
  const float level = round_scalar(scaled);
  return level < -top ? -top : level > top ? top : level;
}

// The 32 codes of one int4 chunk (16 bytes: low nibbles inputs 0..15, high nibbles 16..31), in
// input order.
inline __m256i int4_chunk_codes(const uint8_t* chunk) {
  const __m128i low_nibbles = _mm_set1_epi8(0x0F);
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(chunk));
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low_nibbles), _mm_and_si128(packed, low_nibbles));
}

// A 32-byte load of int4 codes, two chunks, as bytes: `low` the low nibbles (inputs 0..15 and
// 32..47 of the 64 it holds), `high` the high ones (16..31 and 48..63).
struct Int4Nibbles {
  __m256i low, high;
};
inline Int4Nibbles int4_line_nibbles(const uint8_t* p) {
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return {_mm256_and_si256(packed, low_nibbles), _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibbles)};
}

// max |x_i| over x[0..n) into *largest; false when an x is NaN or infinite.
inline bool largest_magnitude(const float* x, int64_t n, float* largest) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f), infinity = _mm256_set1_ps(__builtin_inff());
  __m256 largest8 = _mm256_setzero_ps(), not_finite = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 magnitude = _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(x + i));
    largest8 = _mm256_max_ps(largest8, magnitude);
    not_finite = _mm256_or_ps(not_finite, _mm256_cmp_ps(magnitude, infinity, _CMP_NLT_UQ));
  }
  float result = horizontal_max(largest8);
  bool finite = _mm256_movemask_ps(not_finite) == 0;
  for (; i < n; ++i) {
    const float magnitude = __builtin_fabsf(x[i]);
    result = magnitude > result ? magnitude : result;
    finite = finite && magnitude < __builtin_inff();
  }
  *largest = result;
  return finite;
}

inline int32_t horizontal_sum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

}  // namespace
}  // namespace qnoise::kernels
