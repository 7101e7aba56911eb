#pragma once
// Batch-1 PQ tables for the AVX2 kernels (float tables, and the int8 tables' integer products):
// T[k] = sum_i c_k[i] * x[i] from a codebook transposed to [d][kp]. Include only from files
// compiled with -mavx2 -mfma; internal linkage as in simd_helpers.h.
#include <immintrin.h>

#include <cstdint>

#include "runtime/simd_helpers.h"

namespace qnoise::kernels {
namespace {

// Inputs [i0, i0 + kSlice) of a block (x: those inputs; centroids: their rows of the transposed
// codebook), added to the table unless it is the block's first slice: the slice's activations stay
// broadcast in registers while four table vectors at a time take their products, in the same
// order as one chain over the whole block. Broadcasting per product (one chain per table vector)
// spilled the codebook pointers and ran 1.4-1.8x slower (scratch program, d = 4, 8, 16, 4096 inputs).
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

}  // namespace
}  // namespace qnoise::kernels
