#pragma once
// The packed layers' large-batch product on their own threads: panel_gemm_kernels.h's kernel,
// its panels (or batch rows, when a layer has too few panels) split over the worker pool.
#include <cstdint>

#include "kernels/panel_gemm_kernels.h"
#include "qnoise/runtime_options.h"

namespace qnoise::runtime {

// y = x W^T (+ bias) with W's panels packed by `w` (int8/int4 or PQ codes). x [batch, in], y [batch, out]
// row-major; bias may be null. `gemm`: the kernel table's panel_gemm (non-null).
void panel_gemm(decltype(&kernels::panel_gemm_avx2) gemm, const kernels::PanelSource& w, const float* x,
                int64_t batch, int64_t in, int64_t out, const float* bias, float* y, const LinearTuning& tuning);

}  // namespace qnoise::runtime
