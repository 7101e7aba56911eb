#pragma once
// Lookup-table kernels for a PQ Linear weight [out, in] with blocks of d = block_size inputs and
// K <= 256 centroids. No torch here: the AVX2 version is compiled with its own flags.
//
// Code layout (PackedPqLinear builds it): output rows are padded to a multiple of 8 with code 0
// (their outputs are dropped); blocks are cut into groups of `group_blocks` (the last may be
// shorter), and rows into chunks of 64 (the last may be shorter, a multiple of 8). Group G holds
// blocks [j0, j0 + s) with j0 = G * group_blocks and stores, chunk after chunk, each block's codes
// for the chunk's rows contiguously:
//   code(o, j0 + jj) = codes[out_padded * j0 + (o / 64) * 64 * s + jj * rows(o / 64) + o % 64]
// so one 64-byte load gives 64 rows' codes for one block (the int8-table kernel), an 8-byte load
// the 8 rows of a row group (the float kernels), and a group is one sequential stream.
#include <cstdint>

namespace qnoise::kernels {

constexpr int64_t kPqRowGroup = 8;
constexpr int64_t kPqRowChunk = 64;
// Batch columns handled per call of the group kernel (tables hold one float per column).
constexpr int64_t kPqMaxLanes = 64;

struct PqLutWeight {
  const uint8_t* codes = nullptr;
  const float* centroids_t = nullptr;  // the codebook transposed, [d][k_padded], zero beyond K
  // For int8 tables: the centroids as cq_k[i] + 128 (unsigned bytes, for vpdpbusd) in words of 4
  // bytes, [block_bytes / 4][256][4]: 128 (zero) in the padding and beyond K.
  const uint8_t* centroids_q = nullptr;
  float centroid_scale = 0.0f;  // c_k[i] ~ centroid_scale * cq_k[i]
  // For the AVX2 int8-table kernel: the levels cq_k[i] as int16, inputs in pairs,
  // [block_bytes / 2][k_padded][2] (zero beyond K and past d), derived from centroids_q per call
  // by pq_level_pairs_avx2; other kernels ignore them.
  const int16_t* centroid_level_pairs = nullptr;
  int64_t out_padded = 0;
  int64_t in = 0;
  int64_t block_size = 0;  // d
  int64_t n_blocks = 0;    // per row: in / d
  int64_t n_centroids = 0;
  int64_t k_padded = 0;    // K rounded up to 8
  int64_t group_blocks = 0;

  // Always inlined: the SIMD kernel files call them too, and an out-of-line copy built with their
  // flags could otherwise be the one the linker keeps for every file.
  __attribute__((always_inline)) int64_t group_count() const { return (n_blocks + group_blocks - 1) / group_blocks; }
  __attribute__((always_inline)) int64_t group_first_block(int64_t group) const { return group * group_blocks; }
  __attribute__((always_inline)) int64_t group_size(int64_t group) const {
    const int64_t rest = n_blocks - group * group_blocks;
    return rest < group_blocks ? rest : group_blocks;
  }
  __attribute__((always_inline)) int centroid_level(int64_t k, int64_t i) const {
    return static_cast<int>(centroids_q[((i / 4) * 256 + k) * 4 + i % 4]) - 128;
  }
  // Rows of row chunk c (64, or fewer in the last).
  __attribute__((always_inline)) int64_t chunk_rows(int64_t chunk) const {
    const int64_t rest = out_padded - chunk * kPqRowChunk;
    return rest < kPqRowChunk ? rest : kPqRowChunk;
  }
  // Index of the codes of `row`'s chunk for the group's first block: code(row, j0 + jj) is at
  // row_codes(group, row) + jj * chunk_rows(row / 64).
  __attribute__((always_inline)) int64_t row_codes(int64_t group, int64_t row) const {
    const int64_t chunk = row / kPqRowChunk;
    return out_padded * group_first_block(group) + chunk * kPqRowChunk * group_size(group) + row % kPqRowChunk;
  }
  __attribute__((always_inline)) int64_t code_index(int64_t row, int64_t block) const {
    const int64_t group = block / group_blocks;
    return row_codes(group, row) + (block - group_first_block(group)) * chunk_rows(row / kPqRowChunk);
  }
};

// Floats of table workspace the group kernels need for `lanes` batch columns.
inline int64_t pq_table_floats(const PqLutWeight& w, int64_t lanes) {
  return w.group_blocks * w.k_padded * lanes;
}

// For the blocks of `group` and rows [row_begin, row_end) (multiples of 8, within out_padded):
//   T_j[k][b] = sum_i c_k[i] * xt[(j * d + i) * lanes + b]    (built in `tables`)
//   y[o * lanes + b] += sum_{j in group} T_j[code(o, j)][b]
// xt is the activation chunk transposed to [in][lanes] (lanes = 1: x itself); y is [out_padded][lanes].
// Reference: any lanes >= 1. AVX2: lanes == 1 (8 rows per code load) or a multiple of 8 up to
// kPqMaxLanes (vector loads of table rows); only call when cpu_has_avx2_fma().
void pq_lut_group_reference(const PqLutWeight& w, int64_t group, int64_t row_begin, int64_t row_end,
                            const float* xt, int64_t lanes, float* tables, float* y);
void pq_lut_group_avx2(const PqLutWeight& w, int64_t group, int64_t row_begin, int64_t row_end,
                       const float* xt, int64_t lanes, float* tables, float* y);

// Int8 tables (with int8 activations; one batch column per call, x is [in]). The tables are
// integer products: each block of x is quantized on its own with a power-of-two scale, the
// centroids once per layer, and the products are rounded to bytes with one power-of-two step per
// group of blocks, so the rounding is integer shifts. For the blocks j of `group`:
//   a_j     = max_i |x_j[i]|,  e_j = the least e with a_j <= 127 * 2^e     (0 if a_j < 2^-100)
//   xq_j[i] = nearbyint(x_j[i] * 2^-e_j) in [-127, 127]                       (0 if a_j < 2^-100)
//   cq_k[i] = the layer's centroids in [-127, 127], c_k ~ centroid_scale * cq_k         (PqLutWeight)
//   D_j[k]  = sum_i cq_k[i] xq_j[i], an exact int32;  lo_j, hi_j = min, max over k < K
//   t_j     = the least t with hi_j - lo_j <= 255 * 2^t;  sh = max_j (e_j + t_j) over hi_j > lo_j
//   q_j[k]  = (D_j[k] - lo_j) shifted left by e_j - sh, or right by r = sh - e_j rounding half up
//             (0 when |e_j - sh| > 31), in [0, 255]; 0 for k >= K          (byte tables [s][256])
//   y[o]   += fma(ldexp(centroid_scale, sh), sum_j q_j[code(o, j)], sum_j float(lo_j) * u_j)
//             with u_j = centroid_scale * 2^e_j (step 0 when every table is flat)
// The code sums are exact integers; each output is off the float tables' by the activation and
// centroid rounding plus at most half a step per block, the step below twice the widest table's
// range / 255. A non-finite activation makes every y NaN. Groups hold at most
// kPqInt8MaxGroupBlocks blocks, so a row's sum fits 16 bits. The reference, AVX2 and AVX-512
// kernels agree bit for bit; rows as for the float kernels.
constexpr int64_t kPqInt8TableBytes = 256;
constexpr int64_t kPqInt8MaxGroupBlocks = 256;
constexpr int kPqCentroidLevels = 127;

// 2^e as a float, for e in [-126, 127].
__attribute__((always_inline)) inline float pq_power_of_two(int e) {
  const uint32_t bits = static_cast<uint32_t>(e + 127) << 23;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}
// e_j of a block whose largest |x| is a (finite, >= kPqSmallestBlock): from a's exponent E and
// mantissa m in [1, 2), a <= 127 * 2^(E - 6) exactly when m <= 127 / 64, i.e. when m's 23 stored
// bits are at most kPqMantissa127Over64. (The AVX-512 kernel does the same on 16 lanes.)
constexpr float kPqSmallestBlock = 0x1p-100f;
constexpr uint32_t kPqMantissa127Over64 = 0x7E0000;  // (127 / 64 - 1) * 2^23
__attribute__((always_inline)) inline int pq_block_exponent(float a) {
  uint32_t bits;
  __builtin_memcpy(&bits, &a, 4);
  return static_cast<int>(bits >> 23) - 127 - 6 + ((bits & 0x7FFFFF) > kPqMantissa127Over64 ? 1 : 0);
}
// t_j of a block's table range (hi - lo >= 1).
__attribute__((always_inline)) inline int pq_table_shift(uint32_t range) {
  const int t = 32 - __builtin_clz(range) - 8;
  const bool above = t >= 0 ? range > (255u << t) : (range << -t) > 255u;
  return above ? t + 1 : t;
}
// q_j[k] from D_j[k] - lo_j and r = sh - e_j.
__attribute__((always_inline)) inline uint32_t pq_table_level(uint32_t above_low, int right_shift) {
  if (right_shift < -31 || right_shift > 31) return 0;  // (left: only blocks whose tables are flat)
  if (right_shift <= 0) return above_low << -right_shift;
  return (above_low + (1u << (right_shift - 1))) >> right_shift;
}

// What a group's int8 tables share, gathered block by block in every kernel (so their steps and
// offsets agree bit for bit): sh = the largest e_j + t_j over the blocks whose tables are not flat,
// and the offsets sum_j float(lo_j) * u_j; offset_sum is NaN once a block was not finite.
struct PqInt8GroupScale {
  int shift = INT32_MIN;  // while every table is flat
  float offset_sum = 0.0f;
  // Block j's exponent e_j and the min and max of its products D_j[k] (less any offset the kernel
  // added to every one of them: only their difference sets t_j).
  __attribute__((always_inline)) void add_block(int exponent, int32_t low, int32_t high, bool finite,
                                                float centroid_scale) {
    if (high > low) {
      const int block_shift = exponent + pq_table_shift(static_cast<uint32_t>(high - low));
      shift = block_shift > shift ? block_shift : shift;
    }
    offset_sum = finite ? offset_sum + static_cast<float>(low) * (centroid_scale * pq_power_of_two(exponent))
                        : __builtin_nanf("");
  }
  // r = sh - e_j for pq_table_level and pq_table_rounding (32, no level, while every table is flat).
  __attribute__((always_inline)) int right_shift(int exponent) const {
    return shift == INT32_MIN ? 32 : shift - exponent;
  }
  __attribute__((always_inline)) float step(float centroid_scale) const {
    return shift == INT32_MIN ? 0.0f : __builtin_ldexpf(centroid_scale, shift);
  }
};

// q_j[k] for every k of a block as the SIMD kernels compute it, from r = sh - e_j (`right`, 32 when
// every table is flat): (D_j[k] - low) shifted right by right_count or left by left_count (one of
// them 0), with low = lo_j less the rounding half when shifting right; every q_j[k] is 0 when `none`.
struct PqTableRounding {
  int32_t low;
  int right_count;
  int left_count;
  bool none;
};
__attribute__((always_inline)) inline PqTableRounding pq_table_rounding(int right, int32_t lo) {
  const bool none = right > 31 || right < -31;
  return {right > 0 && !none ? lo - static_cast<int32_t>(1u << (right - 1)) : lo, right > 0 ? right : 0,
          right < 0 ? -right : 0, none};
}

// Bytes of one block of quantized activations or centroid: d rounded up to whole 4-byte words
// (the AVX-512 kernel multiplies 4 bytes at a time; the padding is zero).
inline int64_t pq_int8_block_bytes(int64_t block_size) { return (block_size + 3) / 4 * 4; }
// Scratch bytes of one int8-table group call: int32 products, quantized activations, byte tables.
inline int64_t pq_int8_scratch_bytes(const PqLutWeight& w) {
  return w.group_blocks * (4 * kPqInt8TableBytes + pq_int8_block_bytes(w.block_size) + kPqInt8TableBytes);
}
// The scratch's parts, per block of the group: kPqInt8TableBytes int32 products, then as many
// table bytes, then pq_int8_block_bytes quantized activations.
struct PqInt8Scratch {
  int32_t* products;
  uint8_t* tables;
  int8_t* activations;
};
inline PqInt8Scratch pq_int8_scratch(const PqLutWeight& w, uint8_t* scratch) {
  uint8_t* tables = scratch + 4 * kPqInt8TableBytes * w.group_blocks;
  return {reinterpret_cast<int32_t*>(scratch), tables,
          reinterpret_cast<int8_t*>(tables + kPqInt8TableBytes * w.group_blocks)};
}
void pq_int8_lut_group_reference(const PqLutWeight& w, int64_t group, int64_t row_begin, int64_t row_end,
                                 const float* x, uint8_t* scratch, float* y);
// centroid_level_pairs: how many values they hold, and writing them from w.centroids_q (only call
// when cpu_has_avx2_fma()).
inline int64_t pq_level_pairs_size(const PqLutWeight& w) { return pq_int8_block_bytes(w.block_size) * w.k_padded; }
void pq_level_pairs_avx2(const PqLutWeight& w, int16_t* pairs);
// Only call when cpu_has_avx2_fma(), with w.centroid_level_pairs set.
void pq_int8_lut_group_avx2(const PqLutWeight& w, int64_t group, int64_t row_begin, int64_t row_end,
                            const float* x, uint8_t* scratch, float* y);
// Only call when cpu_has_avx512_vnni_vbmi().
void pq_int8_lut_group_avx512(const PqLutWeight& w, int64_t group, int64_t row_begin, int64_t row_end,
                              const float* x, uint8_t* scratch, float* y);

}  // namespace qnoise::kernels
