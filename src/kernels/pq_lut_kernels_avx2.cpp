// AVX2+FMA lookup-table kernels for PQ Linear layers. Compiled with -mavx2 -mfma and called only
// after cpu_has_avx2_fma(), so everything here has internal linkage and no standard-library
// templates are instantiated (a weak symbol compiled with AVX2 could replace the portable copy).
//
// Batch 1: tables T_j[k] (1 KB per block for K = 256, a group's tables stay in L1); one 8-byte
// load gives the codes of 8 output rows for block j, and scalar loads fetch their table values.
// Batches: T_j[k] holds `lanes` floats (one per batch column), so a lookup is lanes/8 plain
// vector loads of one table row and the 8 rows of a row group share nothing but the code stream.
#include <immintrin.h>

#include <cstdint>

#include "kernels/pq_lut_kernels.h"
#include "kernels/simd_helpers.h"

namespace qnoise::kernels {

namespace {

// Inputs [i0, i0 + kSlice) of a block (x: those inputs; centroids: their rows of the transposed
// codebook), added to the table unless it is the block's first slice: the slice's activations stay
// broadcast in registers while four table vectors at a time take their products, in the same
// order as one chain over the whole block. Broadcasting per product (one chain per table vector)
// spilled the codebook pointers and was slower (docs/kernels.md, "PQ, batch 1").
template <int kSlice>
void build_table_slice(const float* centroids, int64_t kp, const float* x, bool first, float* table) {
  __m256 xb[kSlice];
  QNOISE_UNROLL
  for (int i = 0; i < kSlice; ++i) xb[i] = _mm256_broadcast_ss(x + i);
  auto vectors = [&](auto count, int64_t k) {
    constexpr int kVectors = decltype(count)::value;
    __m256 acc[kVectors];
    QNOISE_UNROLL
    for (int v = 0; v < kVectors; ++v) acc[v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(table + k + 8 * v);
    QNOISE_UNROLL
    for (int i = 0; i < kSlice; ++i)
      QNOISE_UNROLL
      for (int v = 0; v < kVectors; ++v)
        acc[v] = _mm256_fmadd_ps(_mm256_loadu_ps(centroids + i * kp + k + 8 * v), xb[i], acc[v]);
    QNOISE_UNROLL
    for (int v = 0; v < kVectors; ++v) _mm256_storeu_ps(table + k + 8 * v, acc[v]);
  };
  int64_t k = 0;
  for (; k + 32 <= kp; k += 32) vectors(RowCount<4>{}, k);
  for (; k < kp; k += 8) vectors(RowCount<1>{}, k);
}

// table[k] = sum_i centroids_t[i * kp + k] * x[i] over the d inputs of one block, for every k < kp
// (a multiple of 8), each a chain of FMAs in order of i from zero.
inline void build_block_table(const float* centroids_t, int64_t kp, const float* x, int64_t d, float* table) {
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) build_table_slice<8>(centroids_t + i * kp, kp, x + i, i == 0, table);
  for (; i + 4 <= d; i += 4) build_table_slice<4>(centroids_t + i * kp, kp, x + i, i == 0, table);
  for (; i < d; ++i) build_table_slice<1>(centroids_t + i * kp, kp, x + i, i == 0, table);
}

// T_j[k] for lanes = 1, block after block.
void build_tables_single(const PqLutWeight& w, const float* xt, int64_t j0, int64_t s, float* tables) {
  const int64_t d = w.block_size;
  for (int64_t jj = 0; jj < s; ++jj)
    build_block_table(w.centroids_t, w.k_padded, xt + (j0 + jj) * d, d, tables + jj * w.k_padded);
}

// T_j[k][b] for lanes = 8 * kVectors batch columns; xt is [in][lanes].
template <int kDim, int kVectors>
void build_tables_batched(const PqLutWeight& w, const float* xt, int64_t j0, int64_t s, float* tables) {
  const int64_t d = kDim > 0 ? kDim : w.block_size, lanes = 8 * kVectors;
  for (int64_t jj = 0; jj < s; ++jj) {
    const float* xj = xt + (j0 + jj) * d * lanes;
    float* table = tables + jj * w.k_padded * lanes;
    for (int64_t k = 0; k < w.n_centroids; ++k) {
      const float* centroid = w.centroids_t + k;  // its i-th value at i * k_padded
      QNOISE_UNROLL
      for (int v = 0; v < kVectors; ++v) {
        __m256 acc = _mm256_setzero_ps();
        QNOISE_UNROLL
        for (int64_t i = 0; i < d; ++i)
          acc = _mm256_fmadd_ps(_mm256_broadcast_ss(centroid + i * w.k_padded), _mm256_loadu_ps(xj + i * lanes + 8 * v), acc);
        _mm256_storeu_ps(table + k * lanes + 8 * v, acc);
      }
    }
  }
}

// Batch 1: one 8-byte load gives the codes of the 8 rows of a row group for block j, each byte
// indexes T_j directly, and independent scalar sums hide the add latency. Faster than vgatherdps
// of the same 8 values (docs/kernels.md, "PQ, batch 1").
// kGroups row groups at a time (their codes share a cache line: pq_lut_kernels.h).
template <int kGroups>
void lookup_row_groups(const PqLutWeight& w, int64_t group, int64_t s, int64_t g, const float* tables, float* y) {
  constexpr int kRows = kGroups * kPqRowGroup;
  const int64_t kp = w.k_padded;
  const uint8_t* codes = w.codes + w.row_codes(group, g * kPqRowGroup);
  const int64_t stride = w.chunk_rows(g * kPqRowGroup / kPqRowChunk);
  float acc[kRows] = {};
  const float* table = tables;
  for (int64_t jj = 0; jj < s; ++jj, table += kp, codes += stride) {
    QNOISE_UNROLL
    for (int h = 0; h < kGroups; ++h) {
      uint64_t c;
      __builtin_memcpy(&c, codes + h * kPqRowGroup, 8);
      // Byte pairs: GCC then reads the second byte through %ah, saving a shift per code.
      QNOISE_UNROLL
      for (int r = 0; r < kPqRowGroup; r += 2) {
        const uint32_t pair = static_cast<uint32_t>(c >> (8 * r));
        acc[h * kPqRowGroup + r] += table[pair & 0xFF];
        acc[h * kPqRowGroup + r + 1] += table[(pair >> 8) & 0xFF];
      }
    }
  }
  float* yg = y + g * kPqRowGroup;
  QNOISE_UNROLL
  for (int r = 0; r < kRows; ++r) yg[r] += acc[r];
}

void lookup_single(const PqLutWeight& w, int64_t group, int64_t s, int64_t g_begin, int64_t g_end,
                   const float* tables, float* y) {
  constexpr int64_t kChunkGroups = kPqRowChunk / kPqRowGroup;
  for (int64_t g = g_begin; g < g_end;) {
    if (g + 2 <= g_end && g % kChunkGroups != kChunkGroups - 1) {  // a pair within one chunk
      lookup_row_groups<2>(w, group, s, g, tables, y);
      g += 2;
    } else {
      lookup_row_groups<1>(w, group, s, g, tables, y);
      ++g;
    }
  }
}

// kVectors vectors per table row; 8 / kVectors rows in flight so 8 accumulators hide add latency.
template <int kVectors>
void lookup_batched(const PqLutWeight& w, int64_t group, int64_t s, int64_t g_begin, int64_t g_end,
                    const float* tables, float* y) {
  constexpr int kLanes = 8 * kVectors, kRows = 8 / kVectors;
  const int64_t row_stride = w.k_padded * kLanes;
  for (int64_t g = g_begin; g < g_end; ++g) {
    const uint8_t* codes = w.codes + w.row_codes(group, g * kPqRowGroup);
    const int64_t stride = w.chunk_rows(g * kPqRowGroup / kPqRowChunk);
    for (int r0 = 0; r0 < kPqRowGroup; r0 += kRows) {
      __m256 acc[kRows][kVectors];
      QNOISE_UNROLL
      for (int r = 0; r < kRows; ++r)
        QNOISE_UNROLL
        for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm256_setzero_ps();
      const float* table = tables;
      for (int64_t jj = 0; jj < s; ++jj, table += row_stride) {
        QNOISE_UNROLL
        for (int r = 0; r < kRows; ++r) {
          const float* entry = table + codes[jj * stride + r0 + r] * kLanes;
          QNOISE_UNROLL
          for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm256_add_ps(acc[r][v], _mm256_loadu_ps(entry + 8 * v));
        }
      }
      QNOISE_UNROLL
      for (int r = 0; r < kRows; ++r) {
        float* yo = y + (g * kPqRowGroup + r0 + r) * kLanes;
        QNOISE_UNROLL
        for (int v = 0; v < kVectors; ++v)
          _mm256_storeu_ps(yo + 8 * v, _mm256_add_ps(_mm256_loadu_ps(yo + 8 * v), acc[r][v]));
      }
    }
  }
}

template <int kVectors>
void build_batched(const PqLutWeight& w, const float* xt, int64_t j0, int64_t s, float* tables) {
  switch (w.block_size) {
    case 4: build_tables_batched<4, kVectors>(w, xt, j0, s, tables); break;
    case 8: build_tables_batched<8, kVectors>(w, xt, j0, s, tables); break;
    case 16: build_tables_batched<16, kVectors>(w, xt, j0, s, tables); break;
    default: build_tables_batched<0, kVectors>(w, xt, j0, s, tables); break;
  }
}

}  // namespace

void pq_lut_group_avx2(const PqLutWeight& w, int64_t group, int64_t row_begin, int64_t row_end,
                       const float* xt, int64_t lanes, float* tables, float* y) {
  const int64_t j0 = w.group_first_block(group), s = w.group_size(group);
  const int64_t g_begin = row_begin / kPqRowGroup, g_end = row_end / kPqRowGroup;
  if (lanes == 1) {
    build_tables_single(w, xt, j0, s, tables);
    lookup_single(w, group, s, g_begin, g_end, tables, y);
    return;
  }
  switch (lanes) {
    case 8: build_batched<1>(w, xt, j0, s, tables); lookup_batched<1>(w, group, s, g_begin, g_end, tables, y); break;
    case 16: build_batched<2>(w, xt, j0, s, tables); lookup_batched<2>(w, group, s, g_begin, g_end, tables, y); break;
    case 32: build_batched<4>(w, xt, j0, s, tables); lookup_batched<4>(w, group, s, g_begin, g_end, tables, y); break;
    case 64: build_batched<8>(w, xt, j0, s, tables); lookup_batched<8>(w, group, s, g_begin, g_end, tables, y); break;
    default:
      // Other multiples of 8 go through the 8-lane kernel one slice at a time would need a
      // strided xt; the driver only asks for 8, 16, 32 or 64.
      pq_lut_group_reference(w, group, row_begin, row_end, xt, lanes, tables, y);
      break;
  }
}

}  // namespace qnoise::kernels
