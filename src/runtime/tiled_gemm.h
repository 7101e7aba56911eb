#pragma once
// y = x W^T for a weight that exists only in compressed form: rows of W are decoded a tile at a
// time into a thread-local float buffer (never the whole weight) and multiplied with the BLAS
// GEMM, which is faster than any lookup or dequantize-in-register kernel once the batch is large.
#include <cstdint>
#include <functional>

namespace qnoise::runtime {

// Writes rows [row_begin, row_end) of W, as float, to dst ([rows][in], row-major).
using DecodeRows = std::function<void(int64_t row_begin, int64_t row_end, float* dst)>;

// x [batch, in] and y [batch, out] row-major; y is overwritten (no bias). Rows of a tile are
// decoded on at::get_num_threads() threads; the GEMM threads as OpenBLAS is told to.
// tile_floats: floats of one decoded tile (LinearTuning::gemm_tile_floats).
void tiled_gemm(const float* x, int64_t batch, int64_t in, int64_t out, const DecodeRows& decode, float* y,
                int64_t tile_floats);

}  // namespace qnoise::runtime
