// nearest_centroid(): the kernel table's nearest-centroid kernel over every thread.
#include "quant/nearest_centroid.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>

#include "kernels/kernel_table.h"

// libtorch's OpenMP backend implements at::parallel_for inline in its header: without -fopenmp
// the loop silently runs on one thread here (and in every other file that uses it).
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#warning "at::parallel_for runs serially: compile qnoise with OpenMP (-fopenmp, OpenMP::OpenMP_CXX)"
#endif

namespace qnoise::kernels {

void nearest_centroid(const float* x, int64_t n, const CentroidPanel& panel, int32_t* index,
                      float* distance) {
  const auto kernel = kernel_table().nearest_centroid;
  // Rows are handed out in pieces of about 2^18 multiply-adds from a shared counter rather than
  // split evenly up front: on a shared machine one busy core would otherwise hold up the whole
  // call. Every row is computed the same way wherever it runs, so results do not change.
  const int64_t work_per_row = std::max<int64_t>(1, panel.padded_centroids * panel.dim);
  const int64_t piece_rows = std::max<int64_t>(16, (int64_t{1} << 18) / work_per_row);
  const int64_t n_pieces = (n + piece_rows - 1) / piece_rows;
  const int64_t dim = panel.dim;
  std::atomic<int64_t> next_piece{0};
  // Each task drains the counter, so any number of tasks (one per thread, or one inline when
  // nested in another parallel region) covers every piece exactly once.
  at::parallel_for(0, n_pieces, 2, [&](int64_t, int64_t) {
    for (int64_t piece = next_piece++; piece < n_pieces; piece = next_piece++) {
      const int64_t begin = piece * piece_rows;
      const int64_t count = std::min(piece_rows, n - begin);
      kernel(x + begin * dim, count, panel, index + begin, distance + begin);
    }
  });
}

}  // namespace qnoise::kernels
