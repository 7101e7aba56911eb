#pragma once
// Matrix-vector kernels for int8 / int4 Linear weights with per-output-row affine parameters,
// w_oi = (q_oi - zero_point_o) * scale_o, and fp32 activations. Each row is computed as
//   y_o = scale_o * (sum_i q_oi * x_i - zero_point_o * x_sum),   x_sum = sum_i x_i,
// so the inner loop only converts codes to float and multiplies (dequantized in registers).
// No torch here: the AVX2 versions are compiled with their own flags.
//
// Code layout (PackedScalarLinear builds it), row o at codes + o * row_bytes:
//   int8: q_oi at byte i (row_bytes = in);
//   int4: inputs in chunks of 32, 16 bytes per chunk: byte t of chunk c holds q for input
//         32c + t in its low nibble and 32c + 16 + t in its high nibble (padding codes are 0).
//         One 16-byte load then gives two runs of 16 consecutive inputs with one mask and shift.
#include <cstdint>

namespace qnoise::kernels {

constexpr int64_t kInt4Chunk = 32;

// Where input i's int4 code sits in its row (the layout above): the byte, and whether it is that
// byte's high nibble. Always inlined, as code() below.
__attribute__((always_inline)) inline int64_t int4_code_byte(int64_t i) {
  return i / kInt4Chunk * (kInt4Chunk / 2) + i % (kInt4Chunk / 2);
}
__attribute__((always_inline)) inline bool int4_code_is_high(int64_t i) { return i % kInt4Chunk >= kInt4Chunk / 2; }

// Writes input i's int4 code q (< 16) into its row, keeping the byte's other nibble.
__attribute__((always_inline)) inline void set_int4_code(uint8_t* row, int64_t i, uint8_t q) {
  uint8_t& byte = row[int4_code_byte(i)];
  byte = static_cast<uint8_t>(int4_code_is_high(i) ? (byte & 0x0F) | (q << 4) : (byte & 0xF0) | q);
}

struct ScalarLinearWeight {
  const uint8_t* codes = nullptr;
  int bits = 8;
  int64_t in = 0;
  int64_t row_bytes = 0;
  const float* scale = nullptr;       // [out]
  const float* zero_point = nullptr;  // [out], as float

  // Always inlined: the SIMD kernel files call it too, and an out-of-line copy built with their
  // flags could otherwise be the one the linker keeps for every file.
  __attribute__((always_inline)) uint8_t code(int64_t row, int64_t i) const {
    const uint8_t* r = codes + row * row_bytes;
    if (bits == 8) return r[i];
    const uint8_t byte = r[int4_code_byte(i)];
    return int4_code_is_high(i) ? byte >> 4 : byte & 0x0F;
  }
};

inline int64_t int4_row_bytes(int64_t in) { return (in + kInt4Chunk - 1) / kInt4Chunk * (kInt4Chunk / 2); }

// y[o] = scale_o * (sum_i q_oi x_i - zero_point_o * x_sum) for rows [row_begin, row_end); x is [in].
void scalar_matvec_reference(const ScalarLinearWeight& w, const float* x, float x_sum, int64_t row_begin,
                             int64_t row_end, float* y);
// Only call when cpu_has_avx2_fma().
void scalar_matvec_avx2(const ScalarLinearWeight& w, const float* x, float x_sum, int64_t row_begin,
                        int64_t row_end, float* y);

// Int8 activations (W8A8, W4A8). One batch row's activations are quantized
// symmetrically, xq_i = round(x_i / x_scale), |xq_i| <= kActivationLevels; the row's product is then
// exact in integers: y_o = scale_o * x_scale * (sum_i q_oi xq_i - zero_point_o * sum_i xq_i).
// 7 bits, as PyTorch's x86 backend (fbgemm's reduce_range): vpmaddubsw adds two u8 x s8 products in
// int16, which 2 * 255 * 63 fits and 2 * 255 * 127 does not. The int32 sums hold for in <= 2^17.
constexpr int kActivationLevels = 63;
constexpr int64_t kMaxInt8ActivationInputs = int64_t{1} << 17;
// Row o's output from its integer product dot = sum_i q_oi xq_i, the same arithmetic in every
// kernel (the SIMD files are compiled with -ffp-contract=off, so no fma changes its rounding).
// static: each kernel file keeps its own copy, built with its own flags.
static inline float int8_activation_output(const ScalarLinearWeight& w, int64_t o, int32_t dot, int32_t xq_sum,
                                    float x_scale) {
  return w.scale[o] * x_scale * (static_cast<float>(dot) - w.zero_point[o] * static_cast<float>(xq_sum));
}
// max |x_i| over x[0..n) into *largest; false when an x is NaN or infinite. The reference
// quantizers' scan (the SIMD ones have largest_magnitude in simd_helpers.h).
bool largest_magnitude_reference(const float* x, int64_t n, float* largest);
// Writes xq[0..n) and *x_scale (0 for an all-zero row); returns sum_i xq_i.
int32_t quantize_activations(const float* x, int64_t n, int8_t* xq, float* x_scale);
// The same, bit for bit; only call when cpu_has_avx2_fma().
int32_t quantize_activations_avx2(const float* x, int64_t n, int8_t* xq, float* x_scale);
void int8_activation_matvec_reference(const ScalarLinearWeight& w, const int8_t* xq, int32_t xq_sum, float x_scale,
                                      int64_t row_begin, int64_t row_end, float* y);
// Only call when cpu_has_avx2_fma().
void int8_activation_matvec_avx2(const ScalarLinearWeight& w, const int8_t* xq, int32_t xq_sum, float x_scale,
                                 int64_t row_begin, int64_t row_end, float* y);
// Only call when cpu_has_avx512_vnni_vbmi().
void int8_activation_matvec_avx512_vnni(const ScalarLinearWeight& w, const int8_t* xq, int32_t xq_sum, float x_scale,
                                        int64_t row_begin, int64_t row_end, float* y);

// Rows [row_begin, row_end) of the float weight into out ([rows][in], row-major).
void scalar_decode_rows_reference(const ScalarLinearWeight& w, int64_t row_begin, int64_t row_end, float* out);
void scalar_decode_rows_avx2(const ScalarLinearWeight& w, int64_t row_begin, int64_t row_end, float* out);

}  // namespace qnoise::kernels
