// AVX-512 VNNI int8-activation kernels for int8 / int4 codes (W8A8, W4A8). Compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni and called only after cpu_has_avx512_vnni_vbmi(), so
// everything here has internal linkage (see scalar_linear_kernels_avx2.cpp).
//
// vpdpbusd adds four u8 code x s8 activation products into each int32 lane in one instruction,
// where AVX2 needs three (vpmaddubsw, vpmaddwd, vpaddd). It runs on 256-bit registers (the VL
// forms): as fast as 512-bit ones on AMD Zen 4, which splits those in two, and without the clock
// penalty some Intel parts take for them. The activations keep the AVX2 path's 7-bit range, so every
// path gives the same integers.
#include <immintrin.h>

#include <cstdint>

#include "kernels/scalar_linear_kernels.h"
#include "kernels/simd_helpers.h"

namespace qnoise::kernels {

namespace {

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// The 32 codes of inputs [i, i + 32) in input order; for int4 (one 16-byte chunk: low nibbles
// inputs 0..15, high nibbles 16..31). `lanes` < 32 masks the int8 load at the row's end (int4 rows
// are padded to whole chunks with zero codes).
template <int kBits>
inline __m256i codes32(const uint8_t* row, int64_t i, __mmask32 lanes) {
  if constexpr (kBits == 8) {
    return _mm256_maskz_loadu_epi8(lanes, row + i);
  } else {
    return int4_chunk_codes(row + i / 2);
  }
}

template <int kBits, int kRows>
void rows_vnni(const ScalarLinearWeight& w, const int8_t* xq, int32_t xq_sum, float x_scale, int64_t row, float* y) {
  const uint8_t* codes[kRows];
  __m256i acc[kRows][2];  // two chains per row: vpdpbusd's latency is several cycles
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    codes[r] = w.codes + (row + r) * w.row_bytes;
    acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  }
  // Inputs [i, i + 64). int4: 32 bytes are two chunks; their low nibbles hold inputs i + 0..15 and
  // i + 32..47, their high nibbles i + 16..31 and i + 48..63, so the activations are regrouped to
  // match (once per step for all rows) instead of the codes.
  auto step64 = [&](int64_t i) {
    const __m256i x0 = load256(xq + i), x1 = load256(xq + i + 32);
    if constexpr (kBits == 8) {
      QNOISE_UNROLL
      for (int r = 0; r < kRows; ++r) {
        acc[r][0] = _mm256_dpbusd_epi32(acc[r][0], load256(codes[r] + i), x0);
        acc[r][1] = _mm256_dpbusd_epi32(acc[r][1], load256(codes[r] + i + 32), x1);
      }
    } else {
      const __m256i x_low = _mm256_permute2x128_si256(x0, x1, 0x20);
      const __m256i x_high = _mm256_permute2x128_si256(x0, x1, 0x31);
      QNOISE_UNROLL
      for (int r = 0; r < kRows; ++r) {
        const Int4Nibbles q = int4_line_nibbles(codes[r] + i / 2);
        acc[r][0] = _mm256_dpbusd_epi32(acc[r][0], q.low, x_low);
        acc[r][1] = _mm256_dpbusd_epi32(acc[r][1], q.high, x_high);
      }
    }
  };
  // Inputs [i, i + lanes): the last 32 or fewer.
  auto step32 = [&](int64_t i, int lanes) {
    const __mmask32 mask = lanes == 32 ? ~__mmask32{0} : (__mmask32{1} << lanes) - 1;
    const __m256i x = _mm256_maskz_loadu_epi8(mask, xq + i);
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) acc[r][0] = _mm256_dpbusd_epi32(acc[r][0], codes32<kBits>(codes[r], i, mask), x);
  };
  constexpr int64_t kLineInputs = kLineBytes * 8 / kBits;  // inputs per 64-byte line of codes
  const int64_t ahead = kRowsPerStep * w.row_bytes;
  int64_t i = 0;
  for (; i + kLineInputs <= w.in; i += kLineInputs) {
    QNOISE_UNROLL
    for (int r = 0; r < kRows; ++r) prefetch(codes[r] + ahead + i * kBits / 8);
    QNOISE_UNROLL
    for (int64_t u = 0; u < kLineInputs; u += 64) step64(i + u);
  }
  for (; i + 64 <= w.in; i += 64) step64(i);
  for (; i < w.in; i += 32) step32(i, static_cast<int>(w.in - i < 32 ? w.in - i : 32));
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) {
    const int32_t dot = horizontal_sum(_mm256_add_epi32(acc[r][0], acc[r][1]));
    const int64_t o = row + r;
    y[o] = int8_activation_output(w, o, dot, xq_sum, x_scale);
  }
}

}  // namespace

void int8_activation_matvec_avx512_vnni(const ScalarLinearWeight& w, const int8_t* xq, int32_t xq_sum, float x_scale,
                                        int64_t row_begin, int64_t row_end, float* y) {
  for_row_steps(row_begin, row_end, [&](auto rows, int64_t row) {
    if (w.bits == 8)
      rows_vnni<8, decltype(rows)::value>(w, xq, xq_sum, x_scale, row, y);
    else
      rows_vnni<4, decltype(rows)::value>(w, xq, xq_sum, x_scale, row, y);
  });
}

}  // namespace qnoise::kernels
