#pragma once
// How the compressed layers run: a value given to each packed layer when it is built (and to the
// loaders that build them), not process-wide state. Options change speed, and int8 activations
// change results within their documented rounding; nothing else does.
#include <cstdint>

#include "qnoise/kernel_path.h"

namespace qnoise {

// Switch points of the packed Linear drivers. They change speed only, never results beyond fp32
// summation order. The defaults and how they were chosen: docs/kernels.md ("Switch points"),
// measured with bench/bench_linear_kernels --sweep.
struct LinearTuning {
  // int8/int4: batches at least this large take the GEMM (the panel GEMM on SIMD paths, decoded
  // tiles and the BLAS GEMM on the reference path); smaller ones the matrix-vector kernel once per
  // batch row over row chunks that stay in L2.
  int64_t scalar_gemm_min_batch = 8;
  // PQ layers: the lookup tables do d times fewer operations than a GEMM, and their cost grows
  // with K * in per batch row against the GEMM's out * in, so the GEMM takes over only for layers
  // with few output rows against K: never for >= 8K rows, from this batch for < 8K rows ...
  int64_t pq_gemm_min_batch = int64_t{1} << 40;
  int64_t pq_medium_out_gemm_min_batch = 32;
  // ... and from this batch for < 2K rows (small convolutions, attention projections).
  int64_t pq_small_out_gemm_min_batch = 16;
  // SIMD paths' large-batch product: the panel GEMM, or (false; for comparison) decoded tiles and
  // the BLAS GEMM, the reference path's product.
  bool panel_gemm = true;
  // The decoded-tile GEMM: floats of one tile of W (rows * in), a slice of L3.
  int64_t gemm_tile_floats = 1 << 20;
  // Below this many multiply-adds (or table lookups) per thread a call stays on fewer threads:
  // waking a sleeping worker costs more than a small layer's work.
  int64_t min_work_per_thread = 1 << 20;
  // Whether the packed layers' worker threads spin for a moment after a call, waiting for the
  // next one, instead of sleeping at once (small layers back to back, as in text generation).
  bool spinning_workers = false;

  // Workers that spin briefly between calls make handing out work cheap, so smaller layers are
  // split over threads too.
  LinearTuning& use_spinning_workers() {
    spinning_workers = true;
    min_work_per_thread = int64_t{1} << 17;
    return *this;
  }
};

struct RuntimeOptions {
  // The kernels the packed layers run (Auto: the widest the CPU has). A path the CPU lacks is an
  // error when a layer is built.
  KernelPath kernel_path = KernelPath::Auto;
  // Int8 activations, off by default; when on, every batch row at any batch size (so a layer
  // computes the same function whatever the batch):
  //  * int8 / int4 weights: the row is quantized symmetrically to 7-bit integers (|q| <= 63, as
  //    PyTorch's fbgemm with reduce_range) and multiplied with the codes in integers, at the cost
  //    of the activations' rounding (half a step of max|x| / 63 per input);
  //  * PQ weights: each block of d inputs is quantized to 8 bits with a power-of-two scale, the
  //    lookup tables are integer products with the codebook's 8-bit form, rounded to one byte per
  //    entry with a power-of-two step per group of blocks (exact definition in
  //    src/kernels/pq_lut_kernels.h). On the AVX2 path int8 tables run at batch 1 only, and layers
  //    with fewer than 2K output rows, where the tables cost more than the lookups, keep float
  //    tables.
  bool int8_activations = false;
  LinearTuning tuning;
};

}  // namespace qnoise
