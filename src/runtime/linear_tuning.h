#pragma once
// Switch points of the packed Linear drivers, measured with bench/bench_linear_kernels (see
// docs/performance.md, "Layer kernels"). Process-wide and mutable so the benchmark can sweep them;
// changing them changes speed only, never results beyond fp32 summation order.
#include <cstdint>

namespace qnoise::runtime {

struct LinearTuning {
  // The large-batch product is the panel GEMM (panel_gemm.h; with the reference kernels, decoded
  // tiles and the BLAS GEMM). Switch points measured with `bench_linear_kernels --sweep` (AMD EPYC
  // Zen 3, AVX2, 1 thread; docs/performance.md).
  // int8/int4: batches at least this large take the GEMM, smaller ones the matrix-vector kernel once
  // per batch row over row chunks that stay in L2 (1024x1024: matvec 1.2x faster at batch 4, level
  // at 8, the GEMM 1.5x faster at 16).
  int64_t scalar_gemm_min_batch = 8;
  // PQ, any layer: never by default. The lookup-table kernel does d times fewer operations than a
  // GEMM; its tables cost K * in multiply-adds per batch row against the GEMM's out * in, so it
  // stays ahead while out is large against K (4096x4096, K = 256, d = 8: 2.05x float's speed at
  // batch 64 against the GEMM's 1.15x; d = 4 level).
  int64_t pq_gemm_min_batch = int64_t{1} << 40;
  // PQ layers with fewer than 8 K output rows: the GEMM from this batch (1024x1024, K = 256 at
  // batch 64: d = 8 1.02x float against the lookups' 0.83x, d = 4 0.93 against 0.59; at 32 level
  // on 1 thread, ahead on 2: d = 8 1.22 against 1.06, d = 4 1.00 against 0.84; behind at 16).
  int64_t pq_medium_out_gemm_min_batch = 32;
  // PQ layers with fewer than 2 K output rows (small convolutions, attention projections): the
  // tables cost more than the product itself, so the GEMM from this batch (Fashion-MNIST
  // EfficientNet eval, batches of thousands of pixels: see docs/performance.md).
  int64_t pq_small_out_gemm_min_batch = 16;
  // The SIMD paths' large-batch product: the panel GEMM, or (false; for comparison in
  // bench_linear_kernels --sweep) decoded tiles and the BLAS GEMM, the reference kernels' path.
  bool panel_gemm = true;
  // The decoded-tile GEMM: floats of one tile of W (rows * in), a slice of L3.
  int64_t gemm_tile_floats = 1 << 20;
  // Below this many multiply-adds (or table lookups) per thread a call stays on fewer threads:
  // waking a sleeping worker (the default, worker_pool.h) costs more than small layers' work.
  // Chosen with OpenMP's sleeping workers, on an idle machine at 2^17: 1024x1024 at batch 1 took
  // 65 us on 2 threads against 37 on 1 (PQ d = 8: 0.4 M units of work; int8: 1 M), while 4096x4096
  // gained (439 -> 292 us; 3.1 M and 16.8 M). 2^20 keeps the first on one thread and splits the
  // second. Not measured again with worker_pool.h, whose sleeping workers cost less (two 5.3 us
  // parts took 9.1 us, against 60-69 us through OpenMP).
  int64_t min_work_per_thread = 1 << 20;

  // With workers that spin briefly between calls (QNOISE_WORKER_WAIT=spin, as in `qnoise
  // generate`) handing out work costs little, so 2^17 units of work per thread (1024x1024 int8
  // with int8 activations 13.2 -> 7.3 us on 2 threads, measured with OpenMP's spinning workers).
  void use_spinning_workers() { min_work_per_thread = int64_t{1} << 17; }
};

LinearTuning& linear_tuning();

}  // namespace qnoise::runtime
