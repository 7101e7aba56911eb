#pragma once
// int4 weights times float activations through integer products. Converting codes to float costs
// 14 instructions per 32 weights (unpack, convert, FMA); vpmaddubsw multiplies 32 int4 codes by 32
// int8 values in one. So a batch row's activations are taken to 24-bit fixed point,
//   X_i = round(x_i / step), |X_i| <= kFixedLevels, step = max_i |x_i| / kFixedLevels,
// each level written as three signed base-254 digits, X = 254^2 d1 + 254 d2 + d3 with |d| <= 127,
// and sum_i q_oi X_i is computed exactly in integers (three vpmaddubsw per 32 weights). The only
// difference from the float product is x's rounding to the step: at most 6.1e-8 of max |x|, fp32's
// own rounding of the largest activation. Outputs, with the layer's affine parameters:
//   y_o = scale_o * step * (sum_i q_oi X_i - zero_point_o * sum_i X_i).
// No torch here: the AVX2 version is compiled with its own flags.
#include <cstdint>

#include "kernels/scalar_linear_kernels.h"

namespace qnoise::kernels {

constexpr int32_t kFixedDigitBase = 254;
constexpr int32_t kFixedLevels = 127 * kFixedDigitBase * kFixedDigitBase;  // 8,193,532 < 2^23
// The row sums are exact in int64 far beyond this; the bound keeps the int32 sums of one digit
// over a whole row (the AVX-512 kernel's; AVX2's are flushed every 4096 inputs) inside int32.
constexpr int64_t kMaxFixedPointInputs = int64_t{1} << 20;

// Row o's output from its exact integer product; double, so both sums keep every bit (< 2^53).
static inline float fixed_point_output(const ScalarLinearWeight& w, int64_t o, int64_t dot, int64_t level_sum,
                                       float step) {
  const double centered =
      static_cast<double>(dot) - static_cast<double>(w.zero_point[o]) * static_cast<double>(level_sum);
  return static_cast<float>(static_cast<double>(w.scale[o]) * static_cast<double>(step) * centered);
}

// Writes levels[0..n), *step and *level_sum = sum_i levels[i]; false, writing nothing, when an x is
// NaN or infinite (the float kernel then gives the NaN outputs the float product would).
bool fixed_point_activations(const float* x, int64_t n, int32_t* levels, float* step, int64_t* level_sum);
void int4_fixed_point_matvec_reference(const ScalarLinearWeight& w, const int32_t* levels, int64_t level_sum,
                                       float step, int64_t row_begin, int64_t row_end, float* y);

// The digits' layout goes by lines of 128 inputs, one 64-byte line of int4 codes; the SIMD kernels
// step through the same lines (fixed_point_lines_end(n) inputs, then 32-input steps).
constexpr int64_t kFixedPointLineInputs = 128;
__attribute__((always_inline)) inline int64_t fixed_point_lines_end(int64_t n) { return n / kFixedPointLineInputs * kFixedPointLineInputs; }

// AVX2 (only call when cpu_has_avx2_fma()): the same levels, step and sum bit for bit, and the
// digits in the kernel's order, fixed_point_digit_bytes(n) bytes:
//  - inputs below fixed_point_lines_end(n), per 64 inputs: for d1, d2, d3 in turn, 32 bytes for inputs
//    0..15 and 32..47 (the low nibbles of a 32-byte load of int4 codes), then 32 for 16..31 and
//    48..63 (the high nibbles);
//  - then per 32 inputs up to n / 32 * 32: d1, d2, d3 of the 32 inputs in order;
//  - the last n % 32 inputs have no digits: the kernel multiplies their levels.
inline int64_t fixed_point_digit_bytes(int64_t n) { return 3 * (n / kInt4Chunk * kInt4Chunk); }
bool fixed_point_activations_avx2(const float* x, int64_t n, int32_t* levels, int8_t* digits, float* step,
                                  int64_t* level_sum);
// The reference's outputs bit for bit; the second only after cpu_has_avx512_vnni_vbmi().
void int4_fixed_point_matvec_avx2(const ScalarLinearWeight& w, const int8_t* digits, const int32_t* levels,
                                  int64_t level_sum, float step, int64_t row_begin, int64_t row_end, float* y);
void int4_fixed_point_matvec_avx512_vnni(const ScalarLinearWeight& w, const int8_t* digits, const int32_t* levels,
                                         int64_t level_sum, float step, int64_t row_begin, int64_t row_end, float* y);

}  // namespace qnoise::kernels
