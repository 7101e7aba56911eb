#pragma once
// y = x W^T for large batches, on a weight that exists only in compressed form. W is taken 16 rows
// at a time ("a panel"); 256 of its inputs at a time are written, transposed, into a 16 KB float
// buffer that stays in L1 (straight from the int8/int4 or PQ codes), and a register-blocked kernel
// (6 batch rows x 16 outputs, 12 accumulators) runs every batch row over it. Unlike decoding tiles
// for the BLAS GEMM (tiled_gemm.h), nothing is written beyond the panel, the packing reads 1, 0.5
// or 1/d bytes of codes per weight instead of writing and re-reading 4, and the product runs on
// the packed layers' own threads. No torch here: the AVX2 file is compiled with its own flags.
#include <cstdint>

#include "kernels/pq_lut_kernels.h"
#include "kernels/scalar_linear_kernels.h"

namespace qnoise::kernels {

constexpr int kPanelRows = 16;
// Batch rows per register tile of the kernel (6 rows x 16 outputs: 12 accumulators).
constexpr int kPanelTileBatch = 6;
// Inputs per packed panel: 16 KB of panel and 6 KB of the six batch rows' inputs fit a 32 KB L1
// (chosen so, not swept).
constexpr int64_t kPanelDepth = 256;

// Where a panel's values come from. pack() writes panel[i * kPanelRows + r] for i < depth, r < 16:
// the weight (row0 + r, k0 + i) divided by row_scale[row0 + r] (or the weight itself when
// row_scale is null), 0 for r >= rows. panel is 32-byte aligned.
struct PanelSource {
  void (*pack)(const void* context, int64_t row0, int rows, int64_t k0, int64_t depth, float* panel) = nullptr;
  const void* context = nullptr;
  const float* row_scale = nullptr;  // [out]; multiplies each output after its sum
};

// int8/int4 codes: the panel holds q - zero_point, row_scale is the weight's scale (context: the
// ScalarLinearWeight). Only call when cpu_has_avx2_fma().
PanelSource scalar_panel_source_avx2(const ScalarLinearWeight& w);

// PQ codes: the panel holds the centroids' values; row_scale (may be null) multiplies each output
// (context: the PqPanelWeight). Only call when cpu_has_avx2_fma().
struct PqPanelWeight {
  PqLutWeight lut;                  // the codes and their layout
  const float* centroids = nullptr;  // the codebook untransposed, [K][d]
};
PanelSource pq_panel_source_avx2(const PqPanelWeight& w, const float* row_scale);

// y[b][o] = sum_i x[b][i] W[o][i] (+ bias[o]) for every b < batch and the outputs of panels
// [panel_begin, panel_end), i.e. rows [16 * panel_begin, min(out, 16 * panel_end)). x is
// [batch][in] and y [batch][out], row-major; bias may be null. Only call when cpu_has_avx2_fma().
void panel_gemm_avx2(const PanelSource& w, const float* x, int64_t batch, int64_t in, int64_t out,
                     int64_t panel_begin, int64_t panel_end, const float* bias, float* y);

}  // namespace qnoise::kernels
