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

#include "runtime/pq_lut_kernels.h"
#include "runtime/simd_helpers.h"

namespace qnoise::kernels {

namespace {

inline __mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

struct Quantized {
  float step = 0.0f;
  float offset_sum = 0.0f;
};

// Block j's activations as the reference quantizes them: xq gets block_bytes bytes (zero padded).
// Returns a_j; clears `finite` on a NaN or infinity (whose levels are 0).
inline float quantize_block(const float* xj, int64_t d, int64_t block_bytes, int8_t* xq, int32_t* level_sum,
                            bool* finite) {
  __m512 largest = _mm512_setzero_ps();
  for (int64_t i = 0; i < d; i += 16) {
    const __mmask16 lanes = first_lanes(d - i);
    const __m512 v = _mm512_maskz_loadu_ps(lanes, xj + i);
    // x - x is 0 exactly when x is finite
    if (_mm512_mask_cmp_ps_mask(lanes, _mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ) != 0) *finite = false;
    largest = _mm512_max_ps(largest, _mm512_abs_ps(v));
  }
  const float a = _mm512_reduce_max_ps(largest);  // NaN lanes may drop out: the outputs are NaN anyway
  const __m512 inverse = _mm512_set1_ps(a > 0.0f ? kPqCentroidLevels / a : 0.0f);
  __m512i sum = _mm512_setzero_si512();
  for (int64_t i = 0; i < d; i += 16) {
    const __mmask16 lanes = first_lanes(d - i);
    const __m512 v = _mm512_maskz_loadu_ps(lanes, xj + i);
    const __mmask16 real = _mm512_mask_cmp_ps_mask(lanes, _mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_EQ_OQ);
    const __m512i levels =
        _mm512_maskz_cvt_roundps_epi32(real, _mm512_mul_ps(v, inverse), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    sum = _mm512_add_epi32(sum, levels);
    _mm_mask_storeu_epi8(xq + i, lanes, _mm512_cvtsepi32_epi8(levels));
  }
  for (int64_t i = d; i < block_bytes; ++i) xq[i] = 0;
  *level_sum = _mm512_reduce_add_epi32(sum);
  return a;
}

// The reference's tables. The products of 16 centroids with a block are one vector: vpdpbusd
// multiplies 4 bytes of the centroids (offset by 128 to be unsigned) with 4 activation bytes per
// lane, and the offset's share, 128 * sum_i xq_j[i], comes off the block's minimum. Each block's
// min and max are taken while its products are in registers; the rounding to bytes waits for the
// group's range.
Quantized quantize_tables(const PqLutWeight& w, const float* x, int64_t j0, int64_t s, uint8_t* scratch) {
  constexpr int kChunks = kPqInt8TableBytes / 16;
  const int64_t d = w.block_size, block_bytes = pq_int8_block_bytes(d), n = w.n_centroids;
  const int64_t chunks = (n + 15) / 16;
  auto* products = reinterpret_cast<int32_t*>(scratch);
  uint8_t* tables = scratch + 4 * kPqInt8TableBytes * w.group_blocks;
  auto* xq = reinterpret_cast<int8_t*>(tables + kPqInt8TableBytes * w.group_blocks);
  float units[kPqInt8MaxGroupBlocks];
  int32_t lows[kPqInt8MaxGroupBlocks];
  float range = 0.0f, offset_sum = 0.0f;
  bool finite = true;
  for (int64_t jj = 0; jj < s; ++jj) {
    int8_t* xq_j = xq + jj * block_bytes;
    int32_t level_sum = 0;
    const float a = quantize_block(x + (j0 + jj) * d, d, block_bytes, xq_j, &level_sum, &finite);
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
    units[jj] = a / kPqCentroidLevels * w.centroid_scale;
    lows[jj] = lo;
    const float span = static_cast<float>(hi - lo) * units[jj];
    range = span > range ? span : range;
    offset_sum += static_cast<float>(lo - 128 * level_sum) * units[jj];
  }
  Quantized q;
  q.offset_sum = finite ? offset_sum : __builtin_nanf("");
  q.step = range / 255.0f;
  const float inverse = finite && range > 0.0f ? 255.0f / range : 0.0f;
  // Bytes come out of the two packs in 4-byte runs of the four vectors, lane by lane; this puts
  // them back in order.
  const __m512i byte_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  for (int64_t jj = 0; jj < s; ++jj) {
    const int32_t* products_j = products + jj * kPqInt8TableBytes;
    const __m512i low = _mm512_set1_epi32(lows[jj]);
    const __m512 multiplier = _mm512_set1_ps(units[jj] * inverse);
    for (int64_t k0 = 0; k0 < kPqInt8TableBytes; k0 += 64) {
      __m512i levels[4];
      QNOISE_UNROLL
      for (int v = 0; v < 4; ++v) {
        const int64_t k = k0 + 16 * v;
        const __mmask16 lanes = finite ? first_lanes(n - k) : __mmask16(0);  // 0 past K
        const __m512 above = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_maskz_loadu_epi32(lanes, products_j + k), low));
        // Rounds to nearest even while converting (nearbyint); the packs saturate at 255.
        levels[v] = _mm512_maskz_cvt_roundps_epi32(lanes, _mm512_mul_ps(above, multiplier),
                                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      }
      const __m512i bytes = _mm512_packus_epi16(_mm512_packus_epi32(levels[0], levels[1]),
                                                _mm512_packus_epi32(levels[2], levels[3]));
      _mm512_storeu_si512(tables + jj * kPqInt8TableBytes + k0, _mm512_permutexvar_epi32(byte_order, bytes));
    }
  }
  return q;
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
    const __m512 even = _mm512_fmadd_ps(
        step, _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(even_rows, h))), offset_sum);
    const __m512 odd = _mm512_fmadd_ps(
        step, _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(odd_bytes, h))), offset_sum);
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
  const Quantized q = quantize_tables(w, x, j0, s, scratch);
  const uint8_t* tables = scratch + 4 * kPqInt8TableBytes * w.group_blocks;
  const __m512 step = _mm512_set1_ps(q.step), offset_sum = _mm512_set1_ps(q.offset_sum);
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
