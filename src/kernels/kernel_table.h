#pragma once
// One table of kernel functions per kernel path (as XNNPACK's configs do), chosen once by the
// caller instead of a test of the CPU at every call: the packed layers keep the table of the path
// their options name, k-means and Quant-Noise take the widest path the CPU runs.
#include "kernels/int4_fixed_point.h"
#include "kernels/nearest_centroid_kernels.h"
#include "kernels/noise_kernels.h"
#include "kernels/panel_gemm_kernels.h"
#include "kernels/pq_lut_kernels.h"
#include "kernels/scalar_linear_kernels.h"
#include "qnoise/kernel_path.h"

namespace qnoise::kernels {

struct KernelTable {
  KernelPath path = KernelPath::Reference;  // resolved: never Auto

  // PQ lookup tables: float tables; int8 tables (int8 activations), which on AVX2 also need the
  // 16-bit level pairs (pq_level_pairs: null on the other paths).
  decltype(&pq_lut_group_reference) pq_lut_group = nullptr;
  decltype(&pq_int8_lut_group_reference) pq_int8_lut_group = nullptr;
  decltype(&pq_level_pairs_avx2) pq_level_pairs = nullptr;

  // int8/int4 rows: float activations, the decoded rows for a GEMM, int8 activations.
  decltype(&scalar_matvec_reference) scalar_matvec = nullptr;
  decltype(&scalar_decode_rows_reference) scalar_decode_rows = nullptr;
  decltype(&kernels::quantize_activations) quantize_activations = nullptr;
  decltype(&int8_activation_matvec_reference) int8_activation_matvec = nullptr;
  // int4 on fixed-point activations (int4_fixed_point.h); null on the reference path, which takes
  // the float kernel.
  decltype(&fixed_point_activations_avx2) fixed_point_activations = nullptr;
  decltype(&int4_fixed_point_matvec_avx2) int4_fixed_point_matvec = nullptr;

  // The large-batch panel GEMM and its weight sources; null on the reference path (decoded tiles
  // and the BLAS GEMM instead).
  decltype(&panel_gemm_avx2) panel_gemm = nullptr;
  decltype(&scalar_panel_source_avx2) scalar_panel_source = nullptr;
  decltype(&pq_panel_source_avx2) pq_panel_source = nullptr;

  // k-means and PQ encoding; Quant-Noise rows.
  decltype(&nearest_centroid_reference) nearest_centroid = nullptr;
  decltype(&pq_noise_rows_portable) pq_noise_rows = nullptr;
  decltype(&scalar_noise_rows_portable) scalar_noise_rows = nullptr;
};

// The table of `path` (Auto: the widest the CPU runs). Throws qnoise::Error when the CPU lacks the
// path's instructions.
const KernelTable& kernel_table(KernelPath path = KernelPath::Auto);

}  // namespace qnoise::kernels
