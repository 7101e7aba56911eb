// AVX2 int8-table kernel for PQ Linear layers (pq_lut_kernels.h, pq_int8_lut_group_*). Compiled
// with -mavx2 -mfma and called only after cpu_has_avx2_fma(), so everything here has internal
// linkage (see pq_lut_kernels_avx2.cpp).
//
// AVX2 has no 256-entry byte lookup (AVX-512's vpermi2b), only vpshufb: 32 codes looked up in a
// 16-byte table. A block's table of 256 bytes is 16 such tables; each looks up the codes' low
// nibble, and a tree of 15 byte blends on the high nibble's bits (bit 4 first) keeps each code's
// own value: 31 vector operations for 32 lookups, where float tables take a scalar load and add
// per lookup (two per cycle at best on Zen 3's two FP adders). The blend tree looked up codes
// faster than the float kernel's loop, and than a compare against each high nibble or XOR-ing the
// lookups of pre-XORed tables (docs/kernels.md, "PQ int8 tables on AVX2").
//
// The tables are the reference's bit for bit: the activations are rounded as the reference rounds
// them, the integer products D_j[k] are exact in int32 (vpmaddwd on 16-bit level pairs), and the
// bytes follow pq_table_level with vector shifts.
#include <immintrin.h>

#include <cstdint>

#include "kernels/pq_lut_kernels.h"
#include "kernels/simd_helpers.h"

namespace qnoise::kernels {

namespace {

// Quantizes one block as the reference does: xq[i] = nearbyint(x[i] * 2^-e) (all 0 when the
// block's largest |x| is below 2^-100 or it holds a NaN or infinity), zero up to block_bytes, and
// its exponent e. Returns whether the block is finite.
bool quantize_block(const float* x, int64_t d, int64_t block_bytes, int8_t* xq, int* exponent) {
  float a = 0.0f;
  const bool finite = largest_magnitude(x, d, &a);
  const bool zero = !(a >= kPqSmallestBlock) || !finite;
  const int e = zero ? 0 : pq_block_exponent(a);
  *exponent = e;
  const float scale = pq_power_of_two(-e);
  const __m256 scales = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    const __m256 rounded = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), scales),
                                           _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
    const __m256i levels = zero ? _mm256_setzero_si256() : _mm256_cvtps_epi32(rounded);
    // Levels are within +-127: two signed packs leave lanes 0-3 in bytes 0-3 and 4-7 in 16-19.
    const __m256i words = _mm256_packs_epi32(levels, levels);
    const __m256i bytes = _mm256_packs_epi16(words, words);
    const int32_t low = _mm_cvtsi128_si32(_mm256_castsi256_si128(bytes));
    const int32_t high = _mm_cvtsi128_si32(_mm256_extracti128_si256(bytes, 1));
    __builtin_memcpy(xq + i, &low, 4);
    __builtin_memcpy(xq + i + 4, &high, 4);
  }
  for (; i < d; ++i) xq[i] = zero ? 0 : static_cast<int8_t>(round_scalar(x[i] * scale));
  for (; i < block_bytes; ++i) xq[i] = 0;
  return finite;
}

// Inputs [2 p0, 2 p0 + 2 kPairs) of a block (levels: their pairs' rows; xq: those inputs), added
// to the products unless it is the block's first slice: each pair of activations broadcast as one
// int32, and vpmaddwd multiplies it with 8 centroids' two levels and adds the two products, two
// vectors of 8 centroids at a time (four spilled). (Integer rather than the float builder on the
// levels, exact below 2^24: integer instructions issue on all four vector units; docs/kernels.md,
// "PQ int8 tables on AVX2".)
template <int kPairs>
void product_slice(const int16_t* levels, int64_t kp, const int8_t* xq, bool first, int32_t* products) {
  __m256i pairs[kPairs];
  QNOISE_UNROLL
  for (int p = 0; p < kPairs; ++p) {
    const uint32_t second = static_cast<uint16_t>(xq[2 * p + 1]);
    const uint32_t pair = static_cast<uint16_t>(xq[2 * p]) | second << 16;
    pairs[p] = _mm256_set1_epi32(static_cast<int32_t>(pair));
  }
  auto vectors = [&](auto count, int64_t k) {
    constexpr int kVectors = decltype(count)::value;
    __m256i acc[kVectors];
    QNOISE_UNROLL
    for (int v = 0; v < kVectors; ++v)
      acc[v] = first ? _mm256_setzero_si256()
                     : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(products + k + 8 * v));
    QNOISE_UNROLL
    for (int p = 0; p < kPairs; ++p)
      QNOISE_UNROLL
      for (int v = 0; v < kVectors; ++v) {
        const auto* level_pairs = reinterpret_cast<const __m256i*>(levels + (p * kp + k + 8 * v) * 2);
        acc[v] = _mm256_add_epi32(acc[v], _mm256_madd_epi16(_mm256_loadu_si256(level_pairs), pairs[p]));
      }
    QNOISE_UNROLL
    for (int v = 0; v < kVectors; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(products + k + 8 * v), acc[v]);
  };
  int64_t k = 0;
  for (; k + 16 <= kp; k += 16) vectors(RowCount<2>{}, k);
  for (; k < kp; k += 8) vectors(RowCount<1>{}, k);
}

// D_j[k] = sum_i cq_k[i] xq_j[i] for every k < kp, exact in int32.
void build_products(const PqLutWeight& w, const int8_t* xq, int32_t* products) {
  const int64_t pairs = (w.block_size + 1) / 2, kp = w.k_padded;
  const int16_t* levels = w.centroid_level_pairs;
  int64_t p = 0;
  for (; p + 8 <= pairs; p += 8) product_slice<8>(levels + p * kp * 2, kp, xq + 2 * p, p == 0, products);
  for (; p + 4 <= pairs; p += 4) product_slice<4>(levels + p * kp * 2, kp, xq + 2 * p, p == 0, products);
  for (; p < pairs; ++p) product_slice<1>(levels + p * kp * 2, kp, xq + 2 * p, p == 0, products);
}

inline int32_t horizontal_min(__m256i v) {
  __m128i m = _mm_min_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_min_epi32(m, _mm_shuffle_epi32(m, 0x4E));
  return _mm_cvtsi128_si32(_mm_min_epi32(m, _mm_shuffle_epi32(m, 0xB1)));
}

inline int32_t horizontal_max(__m256i v) {
  __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4E));
  return _mm_cvtsi128_si32(_mm_max_epi32(m, _mm_shuffle_epi32(m, 0xB1)));
}

// q_j[k] for k < 256 as bytes into table (pq_table_rounding; 0 past K and for every k when
// rounding.none). kMasked = false only for K = 256 tables shifted right.
template <bool kMasked>
void pack_table(const int32_t* products, const PqTableRounding& rounding, int64_t n, uint8_t* table) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // Bytes come out of the two packs in 4-byte runs of the four vectors, lane by lane; this puts
  // them back in order.
  const __m256i byte_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i low = _mm256_set1_epi32(rounding.low);
  const __m128i right_count = _mm_cvtsi32_si128(rounding.right_count);
  const __m128i left_count = _mm_cvtsi32_si128(rounding.left_count);
  const __m256i entries = _mm256_set1_epi32(rounding.none ? 0 : static_cast<int32_t>(n));
  const int64_t written = (n + 7) / 8 * 8;  // products past k_padded were never written
  for (int64_t k0 = 0; k0 < kPqInt8TableBytes; k0 += 32) {
    __m256i levels[4];
    QNOISE_UNROLL
    for (int v = 0; v < 4; ++v) {
      const int64_t k = k0 + 8 * v;
      if constexpr (kMasked) {
        const __m256i index = _mm256_add_epi32(lane, _mm256_set1_epi32(static_cast<int32_t>(k)));
        const __m256i real = _mm256_cmpgt_epi32(entries, index);
        const __m256i values =
            k < written ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(products + k)) : _mm256_setzero_si256();
        const __m256i above = _mm256_and_si256(real, _mm256_sub_epi32(values, low));
        levels[v] = _mm256_sll_epi32(_mm256_srl_epi32(above, right_count), left_count);
      } else {
        const __m256i values = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(products + k));
        levels[v] = _mm256_srl_epi32(_mm256_sub_epi32(values, low), right_count);
      }
    }
    const __m256i bytes = _mm256_packus_epi16(_mm256_packus_epi32(levels[0], levels[1]),
                                              _mm256_packus_epi32(levels[2], levels[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(table + k0), _mm256_permutevar8x32_epi32(bytes, byte_order));
  }
}

// The reference's byte tables of the group's blocks (tables[jj * 256 + k]), with its step and
// offset, in the scratch's parts (pq_int8_scratch).
PqInt8GroupScale quantize_tables(const PqLutWeight& w, const float* x, int64_t j0, int64_t s,
                                 const PqInt8Scratch& parts) {
  int32_t* products = parts.products;
  uint8_t* tables = parts.tables;
  int8_t* xq = parts.activations;
  const int64_t d = w.block_size, n = w.n_centroids, block_bytes = pq_int8_block_bytes(d);
  int exponents[kPqInt8MaxGroupBlocks];
  int32_t lows[kPqInt8MaxGroupBlocks];
  bool finite[kPqInt8MaxGroupBlocks];
  PqInt8GroupScale scale;
  for (int64_t jj = 0; jj < s; ++jj) {
    int8_t* xq_j = xq + jj * block_bytes;
    finite[jj] = quantize_block(x + (j0 + jj) * d, d, block_bytes, xq_j, &exponents[jj]);
    build_products(w, xq_j, products + jj * kPqInt8TableBytes);
  }
  // Each block's min and max in four chains each: a single min and max chain over the 32 vectors
  // stalled on its vmaxps (docs/kernels.md, "PQ int8 tables on AVX2").
  for (int64_t jj = 0; jj < s; ++jj) {
    const int32_t* products_j = products + jj * kPqInt8TableBytes;
    __m256i low[4], high[4];
    QNOISE_UNROLL
    for (int c = 0; c < 4; ++c) {
      low[c] = _mm256_set1_epi32(INT32_MAX);
      high[c] = _mm256_set1_epi32(INT32_MIN);
    }
    int64_t k = 0;
    for (; k + 32 <= n; k += 32)
      QNOISE_UNROLL
      for (int c = 0; c < 4; ++c) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(products_j + k + 8 * c));
        low[c] = _mm256_min_epi32(low[c], v);
        high[c] = _mm256_max_epi32(high[c], v);
      }
    for (; k + 8 <= n; k += 8) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(products_j + k));
      low[0] = _mm256_min_epi32(low[0], v);
      high[0] = _mm256_max_epi32(high[0], v);
    }
    int32_t lo = horizontal_min(_mm256_min_epi32(_mm256_min_epi32(low[0], low[1]), _mm256_min_epi32(low[2], low[3])));
    int32_t hi =
        horizontal_max(_mm256_max_epi32(_mm256_max_epi32(high[0], high[1]), _mm256_max_epi32(high[2], high[3])));
    for (; k < n; ++k) {
      lo = products_j[k] < lo ? products_j[k] : lo;
      hi = products_j[k] > hi ? products_j[k] : hi;
    }
    lows[jj] = lo;
    scale.add_block(exponents[jj], lo, hi, finite[jj], w.centroid_scale);
  }
  for (int64_t jj = 0; jj < s; ++jj) {
    const PqTableRounding rounding = pq_table_rounding(scale.right_shift(exponents[jj]), lows[jj]);
    uint8_t* table = tables + jj * kPqInt8TableBytes;
    const int32_t* products_j = products + jj * kPqInt8TableBytes;
    // Most blocks have K = 256 and shift right: no lanes to mask, one shift.
    if (n == kPqInt8TableBytes && !rounding.none && rounding.left_count == 0)
      pack_table<false>(products_j, rounding, n, table);
    else
      pack_table<true>(products_j, rounding, n, table);
  }
  return scale;
}

// The table values of 32 codes: the 16 sixteen-byte tables looked up by the low nibble, then
// blends on bits 4, 5, 6 and 7 (vpblendvb reads each mask byte's top bit).
inline __m256i look_up_32(__m256i codes, const uint8_t* table) {
  const __m256i low_nibble = _mm256_and_si256(codes, _mm256_set1_epi8(0x0F));
  // 16-bit shifts move each byte's bit b to bit 7 of the same byte.
  const __m256i bit4 = _mm256_slli_epi16(codes, 3), bit5 = _mm256_slli_epi16(codes, 2);
  const __m256i bit6 = _mm256_slli_epi16(codes, 1);
  auto part = [&](int h) {
    const __m128i sixteen = _mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * h));
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(sixteen), low_nibble);
  };
  __m256i by_bit6[2];
  QNOISE_UNROLL
  for (int a = 0; a < 2; ++a) {
    __m256i by_bit5[2];
    QNOISE_UNROLL
    for (int b = 0; b < 2; ++b) {
      __m256i by_bit4[2];
      QNOISE_UNROLL
      for (int c = 0; c < 2; ++c) {
        const int h = 8 * a + 4 * b + 2 * c;  // high nibbles h and h + 1
        by_bit4[c] = _mm256_blendv_epi8(part(h), part(h + 1), bit4);
      }
      by_bit5[b] = _mm256_blendv_epi8(by_bit4[0], by_bit4[1], bit5);
    }
    by_bit6[a] = _mm256_blendv_epi8(by_bit5[0], by_bit5[1], bit6);
  }
  return _mm256_blendv_epi8(by_bit6[0], by_bit6[1], codes);
}

// y[r] += fma(step, sum_r, offset_sum) for the first `rows` (8, 16, 24 or 32) of 32 rows whose
// sums are in 16-bit words: all_bytes word t = sum(row 2t) + 256 sum(row 2t + 1) mod 2^16 and
// odd_bytes word t = sum(row 2t + 1), both sums below 2^16.
inline void add_sums(__m256i all_bytes, __m256i odd_bytes, int64_t rows, __m256 step, __m256 offset_sum, float* y) {
  const __m256i even_rows = _mm256_sub_epi16(all_bytes, _mm256_slli_epi16(odd_bytes, 8));
  QNOISE_UNROLL
  for (int h = 0; h < 2; ++h) {  // rows 16h .. 16h + 15
    if (16 * h >= rows) break;
    const __m128i even_words = h ? _mm256_extracti128_si256(even_rows, 1) : _mm256_castsi256_si128(even_rows);
    const __m128i odd_words = h ? _mm256_extracti128_si256(odd_bytes, 1) : _mm256_castsi256_si128(odd_bytes);
    const __m256 even = _mm256_fmadd_ps(step, _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(even_words)), offset_sum);
    const __m256 odd = _mm256_fmadd_ps(step, _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(odd_words)), offset_sum);
    const __m256 first = _mm256_unpacklo_ps(even, odd), second = _mm256_unpackhi_ps(even, odd);
    float* yh = y + 16 * h;
    _mm256_storeu_ps(yh, _mm256_add_ps(_mm256_loadu_ps(yh), _mm256_permute2f128_ps(first, second, 0x20)));
    if (16 * h + 8 < rows)
      _mm256_storeu_ps(yh + 8, _mm256_add_ps(_mm256_loadu_ps(yh + 8), _mm256_permute2f128_ps(first, second, 0x31)));
  }
}

// Up to 32 rows of one chunk: codes of the group's first block, `stride` bytes between blocks.
// `available` is how many code bytes each block has from here on in the chunk; with fewer than
// 32 they are copied out, so no load reads past the chunk's codes.
void look_up_rows(const uint8_t* codes, int64_t stride, int64_t available, int64_t rows, int64_t s,
                  const uint8_t* tables, __m256 step, __m256 offset_sum, float* y) {
  __m256i all_bytes = _mm256_setzero_si256(), odd_bytes = _mm256_setzero_si256();
  alignas(32) uint8_t copy[32] = {};
  for (int64_t jj = 0; jj < s; ++jj) {
    const uint8_t* block_codes = codes + jj * stride;
    if (available < 32) {
      for (int64_t b = 0; b < available; b += 8) __builtin_memcpy(copy + b, block_codes + b, 8);
      block_codes = copy;
    }
    const __m256i values = look_up_32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block_codes)),
                                      tables + jj * kPqInt8TableBytes);
    all_bytes = _mm256_add_epi16(all_bytes, values);
    odd_bytes = _mm256_add_epi16(odd_bytes, _mm256_srli_epi16(values, 8));
  }
  add_sums(all_bytes, odd_bytes, rows, step, offset_sum, y);
}

}  // namespace

// centroids_q holds, per word of 4 inputs, 4 bytes (level + 128) per centroid: 8 centroids are one
// 32-byte load, sign-extended to 16 bits after flipping the top bit, whose 32-bit lanes are then
// the (input 0, 1) and (input 2, 3) pairs of each centroid in turn; two lane permutes and a
// 128-bit blend give the 8 centroids' first pairs and second pairs. (Vectorized: a scalar loop
// over pq-indexed values and a zero fill per call was a visible share of a 1024x1024 layer's time;
// docs/kernels.md, "PQ int8 tables on AVX2".)
void pq_level_pairs_avx2(const PqLutWeight& w, int16_t* pairs) {
  const int64_t words = pq_int8_block_bytes(w.block_size) / 4, kp = w.k_padded;
  const __m256i first_pairs = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  const __m256i second_pairs = _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7);
  const __m256i top_bit = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t word = 0; word < words; ++word)
    for (int64_t k = 0; k < kp; k += 8) {
      const auto* bytes = reinterpret_cast<const __m256i*>(w.centroids_q + (word * kPqInt8TableBytes + k) * 4);
      const __m256i levels = _mm256_xor_si256(_mm256_loadu_si256(bytes), top_bit);
      const __m256i low = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(levels));   // centroids k .. k + 3
      const __m256i high = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(levels, 1));  // k + 4 .. k + 7
      const __m256i first = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(low, first_pairs),
                                               _mm256_permutevar8x32_epi32(high, first_pairs), 0xF0);
      const __m256i second = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(low, second_pairs),
                                                _mm256_permutevar8x32_epi32(high, second_pairs), 0xF0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(pairs + ((2 * word) * kp + k) * 2), first);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(pairs + ((2 * word + 1) * kp + k) * 2), second);
    }
}

void pq_int8_lut_group_avx2(const PqLutWeight& w, int64_t group, int64_t row_begin, int64_t row_end,
                            const float* x, uint8_t* scratch, float* y) {
  const int64_t j0 = w.group_first_block(group), s = w.group_size(group);
  const PqInt8Scratch parts = pq_int8_scratch(w, scratch);
  const uint8_t* tables = parts.tables;
  const PqInt8GroupScale scale = quantize_tables(w, x, j0, s, parts);
  const __m256 step = _mm256_set1_ps(scale.step(w.centroid_scale)), offset_sum = _mm256_set1_ps(scale.offset_sum);
  for (int64_t r0 = row_begin; r0 < row_end;) {
    const int64_t chunk = r0 / kPqRowChunk, chunk_first = chunk * kPqRowChunk, rows = w.chunk_rows(chunk);
    const int64_t r1 = row_end < chunk_first + rows ? row_end : chunk_first + rows;
    const uint8_t* codes = w.codes + w.row_codes(group, chunk_first);
    for (int64_t r = r0; r < r1; r += 32) {
      const int64_t n = r1 - r < 32 ? r1 - r : 32;
      look_up_rows(codes + (r - chunk_first), rows, chunk_first + rows - r, n, s, tables, step, offset_sum, y + r);
    }
    r0 = r1;
  }
}

}  // namespace qnoise::kernels
