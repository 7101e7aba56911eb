#include "runtime/panel_gemm.h"

#include <ATen/Parallel.h>  // at::get_num_threads

#include <algorithm>

#include "runtime/worker_pool.h"

namespace qnoise::runtime {

void panel_gemm(decltype(&kernels::panel_gemm_avx2) gemm, const kernels::PanelSource& w, const float* x,
                int64_t batch, int64_t in, int64_t out, const float* bias, float* y, const LinearTuning& tuning) {
  const int64_t panels = (out + kernels::kPanelRows - 1) / kernels::kPanelRows;
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), batch * in * out / tuning.min_work_per_thread));
  auto compute = [&](int64_t b0, int64_t b1, int64_t p0, int64_t p1) {
    gemm(w, x + b0 * in, b1 - b0, in, out, p0, p1, bias, y + b0 * out);
  };
  // Threads split the panels when there are enough to share evenly; otherwise the batch rows, in
  // whole register tiles, so that layers of few outputs (convolutions over many pixels) use them all.
  if (parts == 1) return compute(0, batch, 0, panels);
  if (panels >= 4 * parts) {
    run_parts(parts, [&](int64_t p) { compute(0, batch, p * panels / parts, (p + 1) * panels / parts); },
              idle_workers(tuning));
    return;
  }
  constexpr int64_t tile = kernels::kPanelTileBatch;
  const int64_t tiles = (batch + tile - 1) / tile, batch_parts = std::min(parts, tiles);
  run_parts(batch_parts, [&](int64_t p) {
    compute(std::min(batch, p * tiles / batch_parts * tile), std::min(batch, (p + 1) * tiles / batch_parts * tile),
            0, panels);
  }, idle_workers(tuning));
}

}  // namespace qnoise::runtime
