#include "runtime/tiled_gemm.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "runtime/worker_pool.h"

namespace qnoise::runtime {

void tiled_gemm(const float* x, int64_t batch, int64_t in, int64_t out, const DecodeRows& decode, float* y,
                int64_t tile_floats) {
  const int64_t tile_rows = std::min(out, std::max<int64_t>(8, tile_floats / in / 8 * 8));
  thread_local std::vector<float> tile;
  if (static_cast<int64_t>(tile.size()) < tile_rows * in) tile.assign(static_cast<size_t>(tile_rows * in), 0.0f);
  const auto float_options = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor x_view = at::from_blob(const_cast<float*>(x), {batch, in}, float_options);
  float* buffer = tile.data();
  for (int64_t r0 = 0; r0 < out; r0 += tile_rows) {
    const int64_t rows = std::min(tile_rows, out - r0);
    // The workers sleep as soon as the tile is decoded: spinning, they would take the cores the
    // BLAS threads need for the product.
    const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / 16));
    run_parts(parts, [&](int64_t p) {
      const int64_t begin = r0 + p * rows / parts, end = r0 + (p + 1) * rows / parts;
      decode(begin, end, buffer + (begin - r0) * in);
    }, IdleWorkers::Sleep);
    const at::Tensor w_tile = at::from_blob(buffer, {rows, in}, float_options);
    // y[:, r0:r0+rows] is a row-major view with leading dimension `out`: BLAS writes it in place.
    at::Tensor y_view = at::from_blob(y + r0, {batch, rows}, {out, 1}, float_options);
    at::mm_out(y_view, x_view, w_tile.t());
  }
}

}  // namespace qnoise::runtime
