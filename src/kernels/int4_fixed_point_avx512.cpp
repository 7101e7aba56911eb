// AVX-512 VNNI int4 x fixed-point activations (int4_fixed_point.h). Compiled with the AVX-512 VNNI
// flags and called only after cpu_has_avx512_vnni_vbmi(); internal linkage (see
// scalar_linear_kernels_avx2.cpp).
//
// vpdpbusd adds four code x digit products into each int32 lane, so a digit costs one instruction
// per 32 weights where AVX2 takes a vpmaddubsw, a vpaddw and a share of the widening; the int32
// lanes hold a whole row (per digit at most in * 15 * 127 in all, below 2^31 up to
// kMaxFixedPointInputs). 256-bit (VL) forms, as in scalar_linear_kernels_avx512.cpp; AVX-512's 32
// registers keep four rows' 12 accumulators, so each digit load serves four rows. The digits are
// those of fixed_point_activations_avx2.
#include <immintrin.h>

#include <cstdint>

#include "kernels/int4_fixed_point.h"
#include "kernels/simd_helpers.h"

namespace qnoise::kernels {

namespace {

static_assert(kMaxFixedPointInputs * 15 * 127 < (int64_t{1} << 31), "a row's digit sums fit int32");

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

template <int kRows>
void fixed_point_rows_vnni(const ScalarLinearWeight& w, const int8_t* digits, const int32_t* levels,
                           int64_t level_sum, float step, int64_t row, float* y) {
  const uint8_t* codes[kRows];
  __m256i acc[kRows][3];  // sum q d1, sum q d2, sum q d3
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    codes[r] = w.codes + (row + r) * w.row_bytes;
    acc[r][0] = acc[r][1] = acc[r][2] = _mm256_setzero_si256();
  }
  const int64_t ahead = kRowsPerStep * w.row_bytes;
  const int64_t lines_end = fixed_point_lines_end(w.in);
  int64_t i = 0;
  for (; i < lines_end; i += 64) {
    if (i % kFixedPointLineInputs == 0) {
      QNOISE_UNROLL
      for (int r = 0; r < kRows; ++r) prefetch(codes[r] + ahead + i / 2);
    }
    Int4Nibbles q[kRows];
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) q[r] = int4_line_nibbles(codes[r] + i / 2);
    const int8_t* d = digits + 3 * i;
    QNOISE_UNROLL
    for (int k = 0; k < 3; ++k) {
      const __m256i d_low = load256(d + 64 * k), d_high = load256(d + 64 * k + 32);
      QNOISE_UNROLL
      for (int r = 0; r < kRows; ++r)
        acc[r][k] = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(acc[r][k], q[r].low, d_low), q[r].high, d_high);
    }
  }
  // 32-input steps: a 16-byte load gives the codes in input order, as are these digits.
  for (; i + kInt4Chunk <= w.in; i += kInt4Chunk) {
    const int8_t* d = digits + 3 * i;
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const __m256i q = int4_chunk_codes(codes[r] + i / 2);
      QNOISE_UNROLL
      for (int k = 0; k < 3; ++k) acc[r][k] = _mm256_dpbusd_epi32(acc[r][k], q, load256(d + 32 * k));
    }
  }
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    int64_t dot = int64_t{kFixedDigitBase} * kFixedDigitBase * horizontal_sum(acc[r][0]) +
                  int64_t{kFixedDigitBase} * horizontal_sum(acc[r][1]) + horizontal_sum(acc[r][2]);
    for (int64_t t = i; t < w.in; ++t) dot += static_cast<int64_t>(w.code(row + r, t)) * levels[t];
    y[row + r] = fixed_point_output(w, row + r, dot, level_sum, step);
  }
}

}  // namespace

void int4_fixed_point_matvec_avx512_vnni(const ScalarLinearWeight& w, const int8_t* digits, const int32_t* levels,
                                         int64_t level_sum, float step, int64_t row_begin, int64_t row_end, float* y) {
  for_row_steps(row_begin, row_end, [&](auto rows, int64_t row) {
    fixed_point_rows_vnni<decltype(rows)::value>(w, digits, levels, level_sum, step, row, y);
  });
}

}  // namespace qnoise::kernels
