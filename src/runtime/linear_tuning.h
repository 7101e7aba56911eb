#pragma once
// Switch points of the packed Linear drivers, measured with bench/bench_linear_kernels (see
// docs/performance.md, "Layer kernels"). Process-wide and mutable so the benchmark can sweep them;
// changing them changes speed only, never results beyond fp32 summation order.
#include <cstdint>

namespace qnoise::runtime {

struct LinearTuning {
  // int8/int4: batches at least this large decode tiles of W and call the BLAS GEMM; smaller
  // ones run the matrix-vector kernel once per batch row over row chunks that stay in L2
  // (measured, 1 thread: matvec 1.6x faster than the GEMM path at batch 16, 15% slower at 64).
  int64_t scalar_gemm_min_batch = 32;
  // PQ: the same switch. The lookup-table kernel does d times fewer operations than a GEMM and
  // measured 1.6-11x faster than the decoded-tile GEMM at batch 16 and 64 (d = 4 and 8, out >=
  // 1024), so it is never chosen by default; a layer with few output rows and many centroids
  // (out < K) would be the case for it.
  int64_t pq_gemm_min_batch = int64_t{1} << 40;
  // PQ layers with fewer than 2 K output rows (small convolutions, attention projections): the
  // tables (K * in multiply-adds per batch row) cost more than the product itself (out * in), so
  // batches at least this large take the decoded-tile GEMM (Fashion-MNIST EfficientNet eval,
  // batches of thousands of pixels: see docs/performance.md).
  int64_t pq_small_out_gemm_min_batch = 16;
  // Floats of one decoded tile of W (rows * in): a slice of the L3 cache.
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
