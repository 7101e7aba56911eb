// AVX-512 int8-table kernel for PQ Linear layers (pq_lut_kernels.h, pq_int8_lut_group_*).
// Compiled with AVX-512 F/BW/VL/VBMI flags and called only after cpu_has_avx512_vnni_vbmi(), so
// everything here has internal linkage (see pq_lut_kernels_avx2.cpp).
//
// A table of K <= 256 one-byte entries is four 64-byte registers, and vpermi2b looks up 64 codes
// in 128 of its bytes at once: two lookups and a blend on each code's top bit give 64 table values,
// where the float kernel needs a scalar load and add per value (bounded by the load ports). The
// codes of one block for a chunk of 64 rows are one 64-byte load (pq_lut_kernels.h). The 64 byte
// values go into 16-bit sums two rows to a lane
// (all bytes as words, and the odd bytes again shifted down), which a group of <= 256 blocks
// cannot overflow.
#include <immintrin.h>

#include <cstdint>

#include "kernels/pq_lut_kernels.h"
#include "kernels/simd_helpers.h"

namespace qnoise::kernels {

namespace {

inline __mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

// Block exponents e_j (pq_lut_kernels.h) of 16 lanes of largest |x| values, and whether to
// quantize the lane's block at all (a >= 2^-100 and finite: non-finite lanes were set to +inf).
inline __m512i block_exponents(__m512 largest, __mmask16* quantized) {
  const __m512i bits = _mm512_castps_si512(largest);
  *quantized = _mm512_cmp_ps_mask(largest, _mm512_set1_ps(kPqSmallestBlock), _CMP_GE_OQ) &
               _mm512_cmp_ps_mask(largest, _mm512_set1_ps(__builtin_inff()), _CMP_LT_OQ);
  const __m512i exponents = _mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(127 + 6));
  const __mmask16 round_up =
      _mm512_cmpgt_epi32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFF)), _mm512_set1_epi32(kPqMantissa127Over64));
  return _mm512_maskz_mov_epi32(*quantized, _mm512_mask_add_epi32(exponents, round_up, exponents, _mm512_set1_epi32(1)));
}

// 2^-e per lane (exact: the product with x rounds only in the conversion, as the reference's).
inline __m512 inverse_scales(__m512i e) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_sub_epi32(_mm512_set1_epi32(127), e), 23));
}

// Lanes of v that are NaN or infinite (x - x is 0 exactly when x is finite).
inline __mmask16 non_finite(__mmask16 lanes, __m512 v) {
  return _mm512_mask_cmp_ps_mask(lanes, _mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ);
}

// The group's activations quantized as the reference does: xq[jj * block_bytes ...] (zero padded),
// exponents[jj] = e_j and level_sums[jj] = sum_i xq_j[i]. Clears `finite` on a NaN or infinity
// (whose block is then 0). Blocks of 4, 8 or 16 go 16 / d to a vector, the max and sum over each
// block taken by exchanging lanes within it; other sizes one block at a time.
void quantize_blocks(const float* x, int64_t d, int64_t s, int8_t* xq, int* exponents, int32_t* level_sums,
                     bool* finite) {
  const __m512 infinity = _mm512_set1_ps(__builtin_inff());
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  if (d == 4 || d == 8 || d == 16) {
    for (int64_t i = 0; i < s * d; i += 16) {
      const __mmask16 lanes = first_lanes(s * d - i);
      const __m512 v = _mm512_maskz_loadu_ps(lanes, x + i);
      const __mmask16 bad = non_finite(lanes, v);
      if (bad) *finite = false;
      __m512 largest = _mm512_mask_mov_ps(_mm512_abs_ps(v), bad, infinity);
      for (int width = 1; width < d; width *= 2)
        largest = _mm512_max_ps(largest, _mm512_permutexvar_ps(_mm512_xor_si512(lane, _mm512_set1_epi32(width)), largest));
      __mmask16 quantized;
      const __m512i e = block_exponents(largest, &quantized);
      __m512i levels = _mm512_maskz_cvt_roundps_epi32(quantized & lanes, _mm512_mul_ps(v, inverse_scales(e)),
                                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_mask_storeu_epi8(xq + i, lanes, _mm512_cvtsepi32_epi8(levels));
      for (int width = 1; width < d; width *= 2)
        levels = _mm512_add_epi32(levels, _mm512_permutexvar_epi32(_mm512_xor_si512(lane, _mm512_set1_epi32(width)), levels));
      alignas(64) int32_t e_lanes[16], sum_lanes[16];
      _mm512_store_si512(e_lanes, e);
      _mm512_store_si512(sum_lanes, levels);
      for (int64_t b = 0; b < 16 / d && i / d + b < s; ++b) {
        exponents[i / d + b] = e_lanes[b * d];
        level_sums[i / d + b] = sum_lanes[b * d];
      }
    }
    return;
  }
  const int64_t block_bytes = pq_int8_block_bytes(d);
  for (int64_t jj = 0; jj < s; ++jj) {
    const float* xj = x + jj * d;
    __m512 largest = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 lanes = first_lanes(d - i);
      const __m512 v = _mm512_maskz_loadu_ps(lanes, xj + i);
      const __mmask16 bad = non_finite(lanes, v);
      if (bad) *finite = false;
      largest = _mm512_max_ps(largest, _mm512_mask_mov_ps(_mm512_abs_ps(v), bad, infinity));
    }
    __mmask16 quantized;
    const __m512i e = block_exponents(_mm512_set1_ps(_mm512_reduce_max_ps(largest)), &quantized);
    const __m512 scale = inverse_scales(e);
    __m512i sum = _mm512_setzero_si512();
    for (int64_t i = 0; i < d; i += 16) {
      const __mmask16 lanes = first_lanes(d - i);
      const __m512i levels = _mm512_maskz_cvt_roundps_epi32(quantized & lanes, _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, xj + i), scale),
                                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      sum = _mm512_add_epi32(sum, levels);
      _mm_mask_storeu_epi8(xq + jj * block_bytes + i, lanes, _mm512_cvtsepi32_epi8(levels));
    }
    for (int64_t i = d; i < block_bytes; ++i) xq[jj * block_bytes + i] = 0;
    exponents[jj] = _mm_cvtsi128_si32(_mm512_castsi512_si128(e));
    level_sums[jj] = _mm512_reduce_add_epi32(sum);
  }
}

// The reference's tables. The products of 16 centroids with a block are one vector: vpdpbusd
// multiplies 4 bytes of the centroids (offset by 128 to be unsigned) with 4 activation bytes per
// lane, and the offset's share, 128 * sum_i xq_j[i], comes off the block's minimum. Each block's
// min and max are taken while its products are in registers; the shifts to bytes wait for the
// group's step. (The rounding is shifts because a float multiply and two conversions per value
// were a large share of the table time: converts are slow on Zen 4; docs/kernels.md, "PQ weights:
// int8 tables".)
PqInt8GroupScale quantize_tables(const PqLutWeight& w, const float* x, int64_t j0, int64_t s, uint8_t* scratch) {
  constexpr int kChunks = kPqInt8TableBytes / 16;
  const int64_t d = w.block_size, block_bytes = pq_int8_block_bytes(d), n = w.n_centroids;
  const int64_t chunks = (n + 15) / 16;
  const PqInt8Scratch parts = pq_int8_scratch(w, scratch);
  int32_t* products = parts.products;
  uint8_t* tables = parts.tables;
  int8_t* xq = parts.activations;
  int exponents[kPqInt8MaxGroupBlocks];
  int32_t level_sums[kPqInt8MaxGroupBlocks], lows[kPqInt8MaxGroupBlocks];
  bool finite = true;
  quantize_blocks(x + j0 * d, d, s, xq, exponents, level_sums, &finite);
  PqInt8GroupScale scale;
  for (int64_t jj = 0; jj < s; ++jj) {
    const int8_t* xq_j = xq + jj * block_bytes;
    __m512i acc[kChunks];
    QNOISE_UNROLL
    for (int c = 0; c < kChunks; ++c) acc[c] = _mm512_setzero_si512();
    for (int64_t word = 0; word < block_bytes / 4; ++word) {
      int32_t four;
      __builtin_memcpy(&four, xq_j + 4 * word, 4);
      const __m512i activations = _mm512_set1_epi32(four);
      const uint8_t* centroid_words = w.centroids_q + word * 4 * kPqInt8TableBytes;
      QNOISE_UNROLL
      for (int c = 0; c < kChunks; ++c)
        if (c < chunks) acc[c] = _mm512_dpbusd_epi32(acc[c], _mm512_loadu_si512(centroid_words + 64 * c), activations);
    }
    __m512i low = _mm512_set1_epi32(INT32_MAX), high = _mm512_set1_epi32(INT32_MIN);
    QNOISE_UNROLL
    for (int c = 0; c < kChunks; ++c)
      if (c < chunks) {
        const __mmask16 real = first_lanes(n - 16 * c);
        low = _mm512_mask_min_epi32(low, real, low, acc[c]);
        high = _mm512_mask_max_epi32(high, real, high, acc[c]);
        _mm512_storeu_si512(products + jj * kPqInt8TableBytes + 16 * c, acc[c]);
      }
    const int32_t lo = _mm512_reduce_min_epi32(low), hi = _mm512_reduce_max_epi32(high);
    lows[jj] = lo;
    const int32_t offset = 128 * level_sums[jj];  // the products' share of the centroids' +128
    scale.add_block(exponents[jj], lo - offset, hi - offset, finite, w.centroid_scale);
  }
  // Bytes come out of the two packs in 4-byte runs of the four vectors, lane by lane; this puts
  // them back in order.
  const __m512i byte_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  for (int64_t jj = 0; jj < s; ++jj) {
    const int32_t* products_j = products + jj * kPqInt8TableBytes;
    const PqTableRounding rounding = pq_table_rounding(scale.right_shift(exponents[jj]), lows[jj]);
    const __m512i low = _mm512_set1_epi32(rounding.low);
    const __m128i right_count = _mm_cvtsi32_si128(rounding.right_count);
    const __m128i left_count = _mm_cvtsi32_si128(rounding.left_count);
    for (int64_t k0 = 0; k0 < kPqInt8TableBytes; k0 += 64) {
      __m512i levels[4];
      QNOISE_UNROLL
      for (int v = 0; v < 4; ++v) {
        const int64_t k = k0 + 16 * v;
        const __mmask16 lanes = rounding.none ? __mmask16(0) : first_lanes(n - k);  // 0 past K
        const __m512i above = _mm512_maskz_sub_epi32(lanes, _mm512_maskz_loadu_epi32(lanes, products_j + k), low);
        levels[v] = rounding.left_count == 0 ? _mm512_srl_epi32(above, right_count)
                                             : _mm512_sll_epi32(above, left_count);
      }
      const __m512i bytes = _mm512_packus_epi16(_mm512_packus_epi32(levels[0], levels[1]),
                                                _mm512_packus_epi32(levels[2], levels[3]));
      _mm512_storeu_si512(tables + jj * kPqInt8TableBytes + k0, _mm512_permutexvar_epi32(byte_order, bytes));
    }
  }
  return scale;
}

// The rows of one chunk a call looks up: codes of the group's first block, bytes between blocks,
// which of the 64 rows to store, and where the chunk's outputs go.
struct ChunkRows {
  const uint8_t* codes;
  int64_t stride;
  __mmask64 lanes;
  float* y;
};

// Adds step * sums + offset_sum to the chunk's stored rows. Word t of all_bytes is sum(even byte)
// + 256 sum(odd byte) mod 2^16, both sums below 2^16.
inline void add_chunk_sums(const ChunkRows& chunk, __m512i all_bytes, __m512i odd_bytes, __m512 step, __m512 offset_sum) {
  // Output order of the even / odd row sums: rows 0..15 of 32 are even 0, odd 0, even 1, ...
  const __m512i interleave_low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i interleave_high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i even_rows = _mm512_sub_epi16(all_bytes, _mm512_slli_epi16(odd_bytes, 8));
  QNOISE_UNROLL
  for (int h = 0; h < 2; ++h) {  // chunk rows 32h .. 32h + 31
    // The extract's index must be a constant before unrolling too (clang checks it).
    const __m256i even_words = h ? _mm512_extracti64x4_epi64(even_rows, 1) : _mm512_castsi512_si256(even_rows);
    const __m256i odd_words = h ? _mm512_extracti64x4_epi64(odd_bytes, 1) : _mm512_castsi512_si256(odd_bytes);
    const __m512 even = _mm512_fmadd_ps(step, _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(even_words)), offset_sum);
    const __m512 odd = _mm512_fmadd_ps(step, _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(odd_words)), offset_sum);
    QNOISE_UNROLL
    for (int half = 0; half < 2; ++half) {
      const int first = 32 * h + 16 * half;
      const __mmask16 lanes = __mmask16(chunk.lanes >> first);
      if (lanes == 0) continue;
      const __m512 sums = _mm512_permutex2var_ps(even, half ? interleave_high : interleave_low, odd);
      _mm512_mask_storeu_ps(chunk.y + first, lanes, _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, chunk.y + first), sums));
    }
  }
}

// kChunks chunks side by side, so each block's table is loaded into registers once for all of
// them (four 64-byte loads per lookup of 64 codes otherwise bound the loop).
template <int kChunks>
void look_up_chunks(const ChunkRows* chunks, int64_t s, const uint8_t* tables, __m512 step, __m512 offset_sum) {
  __m512i all_bytes[kChunks], odd_bytes[kChunks];
  QNOISE_UNROLL
  for (int c = 0; c < kChunks; ++c) all_bytes[c] = odd_bytes[c] = _mm512_setzero_si512();
  for (int64_t jj = 0; jj < s; ++jj) {
    const uint8_t* t = tables + jj * kPqInt8TableBytes;
    const __m512i t0 = _mm512_loadu_si512(t), t1 = _mm512_loadu_si512(t + 64);
    const __m512i t2 = _mm512_loadu_si512(t + 128), t3 = _mm512_loadu_si512(t + 192);
    QNOISE_UNROLL
    for (int c = 0; c < kChunks; ++c) {
      const __m512i z = _mm512_maskz_loadu_epi8(chunks[c].lanes, chunks[c].codes + jj * chunks[c].stride);
      const __m512i low = _mm512_permutex2var_epi8(t0, z, t1), high = _mm512_permutex2var_epi8(t2, z, t3);
      const __m512i values = _mm512_mask_blend_epi8(_mm512_movepi8_mask(z), low, high);
      all_bytes[c] = _mm512_add_epi16(all_bytes[c], values);
      odd_bytes[c] = _mm512_add_epi16(odd_bytes[c], _mm512_srli_epi16(values, 8));
    }
  }
  QNOISE_UNROLL
  for (int c = 0; c < kChunks; ++c) add_chunk_sums(chunks[c], all_bytes[c], odd_bytes[c], step, offset_sum);
}

}  // namespace

void pq_int8_lut_group_avx512(const PqLutWeight& w, int64_t group, int64_t row_begin, int64_t row_end,
                              const float* x, uint8_t* scratch, float* y) {
  constexpr int kChunksAtOnce = 4;
  const int64_t j0 = w.group_first_block(group), s = w.group_size(group);
  const PqInt8GroupScale scale = quantize_tables(w, x, j0, s, scratch);
  const uint8_t* tables = pq_int8_scratch(w, scratch).tables;
  const __m512 step = _mm512_set1_ps(scale.step(w.centroid_scale)), offset_sum = _mm512_set1_ps(scale.offset_sum);
  ChunkRows chunks[kChunksAtOnce];
  int n = 0;
  for (int64_t r0 = row_begin; r0 < row_end;) {
    const int64_t chunk = r0 / kPqRowChunk, chunk_first = chunk * kPqRowChunk, rows = w.chunk_rows(chunk);
    const int64_t r1 = row_end < chunk_first + rows ? row_end : chunk_first + rows;
    // Rows [r0, r1) of the chunk; the others look up code 0 and are not stored.
    const __mmask64 lanes = (r1 - chunk_first == 64 ? ~__mmask64(0) : (__mmask64(1) << (r1 - chunk_first)) - 1) &
                            ~((__mmask64(1) << (r0 - chunk_first)) - 1);
    chunks[n++] = ChunkRows{w.codes + w.row_codes(group, chunk_first), rows, lanes, y + chunk_first};
    if (n == kChunksAtOnce) {
      look_up_chunks<kChunksAtOnce>(chunks, s, tables, step, offset_sum);
      n = 0;
    }
    r0 = r1;
  }
  for (int c = 0; c < n; ++c) look_up_chunks<1>(chunks + c, s, tables, step, offset_sum);
}

}  // namespace qnoise::kernels
