// AVX2+FMA panel GEMM (panel_gemm_kernels.h). Compiled with -mavx2 -mfma and called only after
// cpu_has_avx2_fma(), so everything here has internal linkage (see scalar_linear_kernels_avx2.cpp).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/panel_gemm_kernels.h"
#include "kernels/simd_helpers.h"

namespace qnoise::kernels {

namespace {

static_assert(kPanelRows == 16, "the kernel holds a panel row in two 8-float registers");

// Transposes the 8x8 block r[row][column] in place.
inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Lanes [0, rows) all ones, the rest zero: clears the panel columns of rows past the weight's end.
inline __m256 lane_mask(int rows) {
  alignas(32) static const int32_t kOnes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_ps(reinterpret_cast<const float*>(kOnes + 8 - std::clamp(rows, 0, 8)));
}

// Runs pack(first, count, mask, out) for the two groups of 8 panel rows: rows [first, first +
// count) of the panel exist (count >= 1), mask clears the lanes past them, out is the group's
// first column. A group past the weight's last row is zeroed here.
template <typename Pack>
inline void for_row_groups(int rows, int64_t depth, float* panel, const Pack& pack) {
  for (int first = 0; first < kPanelRows; first += 8) {
    const int count = std::clamp(rows - first, 0, 8);
    float* out = panel + first;
    if (count == 0) {
      for (int64_t i = 0; i < depth; ++i) _mm256_store_ps(out + i * kPanelRows, _mm256_setzero_ps());
      continue;
    }
    pack(first, count, lane_mask(count), out);
  }
}

// ---- int8 / int4 codes: panel = q - zero_point, transposed 8 rows x 8 inputs at a time.

// 8 codes of one row as int32 lanes: int8 inputs [i, i + 8); int4 the same run, taken from the
// low (first half of a 32-input chunk) or high nibbles (second half) of 8 bytes.
template <int kBits>
inline __m256i codes8(const uint8_t* row, int64_t i) {
  if constexpr (kBits == 8) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + i)));
  } else {
    const int64_t chunk = i / kInt4Chunk, t = i % kInt4Chunk, half = kInt4Chunk / 2;
    const __m256i bytes =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + chunk * half + t % half)));
    return t < half ? _mm256_and_si256(bytes, _mm256_set1_epi32(0x0F)) : _mm256_srli_epi32(bytes, 4);
  }
}

template <int kBits>
void pack_scalar(const ScalarLinearWeight& w, int64_t row0, int rows, int64_t k0, int64_t depth, float* panel) {
  for_row_groups(rows, depth, panel, [&](int first, int count, __m256 mask, float* out) {
    const uint8_t* code_rows[8];
    alignas(32) float zero_point[8] = {};
    for (int r = 0; r < 8; ++r) {
      const int64_t o = row0 + first + std::min(r, count - 1);  // rows past the end repeat the last (masked below)
      code_rows[r] = w.codes + o * w.row_bytes;
      if (r < count) zero_point[r] = w.zero_point[o];
    }
    const __m256 zp = _mm256_load_ps(zero_point);
    int64_t i = 0;
    for (; i + 8 <= depth && (kBits == 8 || (k0 + i) % 8 == 0); i += 8) {
      __m256 r[8];
      QNOISE_UNROLL
      for (int k = 0; k < 8; ++k) r[k] = _mm256_castsi256_ps(codes8<kBits>(code_rows[k], k0 + i));
      transpose8(r);
      QNOISE_UNROLL
      for (int k = 0; k < 8; ++k) {
        const __m256 value = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_castps_si256(r[k])), zp);
        _mm256_store_ps(out + (i + k) * kPanelRows, _mm256_and_ps(value, mask));
      }
    }
    for (; i < depth; ++i)  // a last run of fewer than 8 inputs
      for (int r = 0; r < 8; ++r)
        out[i * kPanelRows + r] =
            r < count ? static_cast<float>(w.code(row0 + first + r, k0 + i)) - zero_point[r] : 0.0f;
  });
}

void pack_scalar_panel(const void* context, int64_t row0, int rows, int64_t k0, int64_t depth, float* panel) {
  const auto& w = *static_cast<const ScalarLinearWeight*>(context);
  if (w.bits == 8)
    pack_scalar<8>(w, row0, rows, k0, depth, panel);
  else
    pack_scalar<4>(w, row0, rows, k0, depth, panel);
}

// ---- PQ codes: the centroids of 8 rows' codes, transposed (d = 4 or a multiple of 8; other
// block sizes gather one value per row from the transposed codebook).

// Rows [row, row + 8) of a panel, inputs [k0 + i0, k0 + i1) within block `block` (at k0 + i0 -
// offset), from centroids[code][offset .. offset + i1 - i0).
void pack_pq_block(const PqPanelWeight& w, int64_t row, int64_t block, __m256 mask, int64_t offset, int64_t i0,
                   int64_t i1, float* out) {
  const int64_t d = w.lut.block_size;
  uint64_t code_bytes;
  std::memcpy(&code_bytes, w.lut.codes + w.lut.code_index(row, block), 8);
  const float* centroid[8];
  for (int r = 0; r < 8; ++r) centroid[r] = w.centroids + static_cast<int64_t>((code_bytes >> (8 * r)) & 0xFF) * d;
  if (d == 4 && offset == 0 && i1 - i0 == 4) {
    // Rows r and r + 4 share a register; one 4x4 transpose per 128-bit half.
    __m256 r0 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(centroid[0])), _mm_loadu_ps(centroid[4]), 1);
    __m256 r1 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(centroid[1])), _mm_loadu_ps(centroid[5]), 1);
    __m256 r2 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(centroid[2])), _mm_loadu_ps(centroid[6]), 1);
    __m256 r3 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(centroid[3])), _mm_loadu_ps(centroid[7]), 1);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    _mm256_store_ps(out + (i0 + 0) * kPanelRows, _mm256_and_ps(_mm256_shuffle_ps(t0, t2, 0x44), mask));
    _mm256_store_ps(out + (i0 + 1) * kPanelRows, _mm256_and_ps(_mm256_shuffle_ps(t0, t2, 0xEE), mask));
    _mm256_store_ps(out + (i0 + 2) * kPanelRows, _mm256_and_ps(_mm256_shuffle_ps(t1, t3, 0x44), mask));
    _mm256_store_ps(out + (i0 + 3) * kPanelRows, _mm256_and_ps(_mm256_shuffle_ps(t1, t3, 0xEE), mask));
    return;
  }
  int64_t i = i0;
  if (d % 8 == 0)
    for (; i + 8 <= i1 && (offset + i - i0) % 8 == 0; i += 8) {
      __m256 r[8];
      QNOISE_UNROLL
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(centroid[k] + offset + (i - i0));
      transpose8(r);
      QNOISE_UNROLL
      for (int k = 0; k < 8; ++k) _mm256_store_ps(out + (i + k) * kPanelRows, _mm256_and_ps(r[k], mask));
    }
  for (; i < i1; ++i) {
    alignas(32) float values[8];
    for (int r = 0; r < 8; ++r) values[r] = centroid[r][offset + (i - i0)];
    _mm256_store_ps(out + i * kPanelRows, _mm256_and_ps(_mm256_load_ps(values), mask));
  }
}

void pack_pq_panel(const void* context, int64_t row0, int rows, int64_t k0, int64_t depth, float* panel) {
  const auto& w = *static_cast<const PqPanelWeight*>(context);
  const int64_t d = w.lut.block_size;
  for_row_groups(rows, depth, panel, [&](int first, int, __m256 mask, float* out) {
    // Rows [row, row + 8) are a row group: their codes for a block are 8 consecutive bytes (rows
    // past `rows` are padding rows or the next panel's, cleared by the mask).
    const int64_t row = row0 + first;
    for (int64_t i = 0; i < depth;) {
      const int64_t block = (k0 + i) / d, offset = (k0 + i) % d, end = std::min(depth, i + d - offset);
      pack_pq_block(w, row, block, mask, offset, i, end, out);
      i = end;
    }
  });
}

// ---- the product: kB (<= kPanelTileBatch) batch rows x 16 outputs over one packed panel.

// Where a tile's outputs go: y rows (leading dimension ld), all 16 columns or the first `columns`.
struct OutputTile {
  float* y;
  int64_t ld;
  int columns;
  bool accumulate;      // add to what y holds (a later run of inputs)
  const float* scale;   // after the last run of inputs: y = sum * scale (+ bias); else null
  const float* bias;
};

inline void load_pair(const OutputTile& t, int b, __m256& c0, __m256& c1) {
  if (!t.accumulate) {
    c0 = c1 = _mm256_setzero_ps();
    return;
  }
  alignas(32) float row[kPanelRows] = {};
  const float* from = t.y + b * t.ld;
  if (t.columns < kPanelRows) from = static_cast<const float*>(std::memcpy(row, from, sizeof(float) * t.columns));
  c0 = _mm256_loadu_ps(from);
  c1 = _mm256_loadu_ps(from + 8);
}

inline void store_pair(const OutputTile& t, int b, __m256 c0, __m256 c1) {
  if (t.scale) {
    c0 = _mm256_mul_ps(c0, _mm256_load_ps(t.scale));
    c1 = _mm256_mul_ps(c1, _mm256_load_ps(t.scale + 8));
    if (t.bias) {
      c0 = _mm256_add_ps(c0, _mm256_load_ps(t.bias));
      c1 = _mm256_add_ps(c1, _mm256_load_ps(t.bias + 8));
    }
  }
  float* to = t.y + b * t.ld;
  if (t.columns == kPanelRows) {
    _mm256_storeu_ps(to, c0);
    _mm256_storeu_ps(to + 8, c1);
    return;
  }
  alignas(32) float row[kPanelRows];
  _mm256_store_ps(row, c0);
  _mm256_store_ps(row + 8, c1);
  std::memcpy(to, row, sizeof(float) * t.columns);
}

// Named accumulators, not an array: GCC kept an array of vectors in memory, storing every
// accumulator on every step (docs/kernels.md, "Large batches: the panel GEMM"). `each(b, c0, c1)`
// runs for rows b < kB.
template <int kB>
void product_tile(const float* panel, int64_t depth, const float* x, int64_t ldx, const OutputTile& t) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  const auto each = [&](const auto& f) __attribute__((always_inline)) {
    f(0, c00, c01);
    if constexpr (kB > 1) f(1, c10, c11);
    if constexpr (kB > 2) f(2, c20, c21);
    if constexpr (kB > 3) f(3, c30, c31);
    if constexpr (kB > 4) f(4, c40, c41);
    if constexpr (kB > 5) f(5, c50, c51);
  };
  each([&](int b, __m256& c0, __m256& c1) __attribute__((always_inline)) { load_pair(t, b, c0, c1); });
#pragma GCC unroll 4
  for (int64_t i = 0; i < depth; ++i) {
    const __m256 w0 = _mm256_load_ps(panel + i * kPanelRows), w1 = _mm256_load_ps(panel + i * kPanelRows + 8);
    each([&](int b, __m256& c0, __m256& c1) __attribute__((always_inline)) {
      const __m256 xb = _mm256_broadcast_ss(x + b * ldx + i);
      c0 = _mm256_fmadd_ps(w0, xb, c0);
      c1 = _mm256_fmadd_ps(w1, xb, c1);
    });
  }
  each([&](int b, __m256& c0, __m256& c1) __attribute__((always_inline)) { store_pair(t, b, c0, c1); });
}

static_assert(kPanelTileBatch == 6, "product_tile names 6 rows of accumulators");

void product_rows(int rows, const float* panel, int64_t depth, const float* x, int64_t ldx, const OutputTile& t) {
  switch (rows) {
    case 6: return product_tile<6>(panel, depth, x, ldx, t);
    case 5: return product_tile<5>(panel, depth, x, ldx, t);
    case 4: return product_tile<4>(panel, depth, x, ldx, t);
    case 3: return product_tile<3>(panel, depth, x, ldx, t);
    case 2: return product_tile<2>(panel, depth, x, ldx, t);
    default: return product_tile<1>(panel, depth, x, ldx, t);
  }
}

}  // namespace

PanelSource scalar_panel_source_avx2(const ScalarLinearWeight& w) {
  PanelSource source;
  source.pack = pack_scalar_panel;
  source.context = &w;
  source.row_scale = w.scale;
  return source;
}

PanelSource pq_panel_source_avx2(const PqPanelWeight& w, const float* row_scale) {
  PanelSource source;
  source.pack = pack_pq_panel;
  source.context = &w;
  source.row_scale = row_scale;
  return source;
}

void panel_gemm_avx2(const PanelSource& w, const float* x, int64_t batch, int64_t in, int64_t out,
                     int64_t panel_begin, int64_t panel_end, const float* bias, float* y) {
  alignas(32) float panel[kPanelDepth * kPanelRows];
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t row0 = p * kPanelRows;
    const int rows = static_cast<int>(std::min<int64_t>(kPanelRows, out - row0));
    alignas(32) float scale[kPanelRows], panel_bias[kPanelRows];
    for (int r = 0; r < kPanelRows; ++r) {
      scale[r] = r < rows && w.row_scale ? w.row_scale[row0 + r] : 1.0f;
      panel_bias[r] = r < rows && bias ? bias[row0 + r] : 0.0f;
    }
    for (int64_t k0 = 0; k0 < in; k0 += kPanelDepth) {
      const int64_t depth = std::min(kPanelDepth, in - k0);
      w.pack(w.context, row0, rows, k0, depth, panel);
      const bool last = k0 + depth == in;
      for (int64_t b0 = 0; b0 < batch; b0 += kPanelTileBatch) {
        const OutputTile tile{y + b0 * out + row0, out, rows, k0 > 0, last ? scale : nullptr,
                              last && bias ? panel_bias : nullptr};
        const int tile_rows = static_cast<int>(std::min<int64_t>(kPanelTileBatch, batch - b0));
        product_rows(tile_rows, panel, depth, x + b0 * in + k0, in, tile);
      }
    }
  }
}

}  // namespace qnoise::kernels
