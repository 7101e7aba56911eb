#include "kernels/kernel_table.h"

#include "kernels/cpu_features.h"
#include "qnoise/error.h"

namespace qnoise {

const char* to_string(KernelPath path) {
  switch (path) {
    case KernelPath::Auto: return "auto";
    case KernelPath::Reference: return "reference";
    case KernelPath::Avx2: return "avx2";
    case KernelPath::Avx512: return "avx512";
  }
  return "?";
}

KernelPath parse_kernel_path(const std::string& name) {
  if (name == "reference") return KernelPath::Reference;
  if (name == "avx2") return KernelPath::Avx2;
  if (name == "avx512") return KernelPath::Avx512;
  if (name == "auto" || name.empty()) return KernelPath::Auto;
  throw Error("kernel path '" + name + "': expected reference, avx2, avx512 or auto");
}

KernelPath resolve_kernel_path(KernelPath path) {
  switch (path) {
    case KernelPath::Reference: return path;
    case KernelPath::Avx2:
      QNOISE_CHECK(kernels::cpu_has_avx2_fma(), "the AVX2+FMA kernels were asked for, but this CPU lacks AVX2 or FMA");
      return path;
    case KernelPath::Avx512:
      QNOISE_CHECK(kernels::cpu_has_avx512_vnni_vbmi(),
                   "the AVX-512 kernels were asked for, but this CPU lacks AVX-512 F/BW/VL/VNNI/VBMI");
      return path;
    case KernelPath::Auto: break;
  }
  if (kernels::cpu_has_avx512_vnni_vbmi()) return KernelPath::Avx512;
  return kernels::cpu_has_avx2_fma() ? KernelPath::Avx2 : KernelPath::Reference;
}

namespace kernels {

namespace {

KernelTable reference_table() {
  KernelTable t;
  t.path = KernelPath::Reference;
  t.pq_lut_group = pq_lut_group_reference;
  t.pq_int8_lut_group = pq_int8_lut_group_reference;
  t.scalar_matvec = scalar_matvec_reference;
  t.scalar_decode_rows = scalar_decode_rows_reference;
  t.quantize_activations = kernels::quantize_activations;
  t.int8_activation_matvec = int8_activation_matvec_reference;
  t.nearest_centroid = nearest_centroid_reference;
  t.pq_noise_rows = pq_noise_rows_portable;
  t.scalar_noise_rows = scalar_noise_rows_portable;
  return t;
}

KernelTable avx2_table() {
  KernelTable t = reference_table();
  t.path = KernelPath::Avx2;
  t.pq_lut_group = pq_lut_group_avx2;
  t.pq_int8_lut_group = pq_int8_lut_group_avx2;
  t.pq_level_pairs = pq_level_pairs_avx2;
  t.scalar_matvec = scalar_matvec_avx2;
  t.scalar_decode_rows = scalar_decode_rows_avx2;
  t.quantize_activations = quantize_activations_avx2;
  t.int8_activation_matvec = int8_activation_matvec_avx2;
  t.fixed_point_activations = fixed_point_activations_avx2;
  t.int4_fixed_point_matvec = int4_fixed_point_matvec_avx2;
  t.panel_gemm = panel_gemm_avx2;
  t.scalar_panel_source = scalar_panel_source_avx2;
  t.pq_panel_source = pq_panel_source_avx2;
  t.nearest_centroid = nearest_centroid_avx2;
  t.pq_noise_rows = pq_noise_rows_avx2;
  t.scalar_noise_rows = scalar_noise_rows_avx2;
  return t;
}

// AVX2 with the AVX-512 VNNI/VBMI kernels for int8 activations.
KernelTable avx512_table() {
  KernelTable t = avx2_table();
  t.path = KernelPath::Avx512;
  t.pq_int8_lut_group = pq_int8_lut_group_avx512;
  t.pq_level_pairs = nullptr;
  t.int8_activation_matvec = int8_activation_matvec_avx512_vnni;
  t.int4_fixed_point_matvec = int4_fixed_point_matvec_avx512_vnni;
  return t;
}

}  // namespace

const KernelTable& kernel_table(KernelPath path) {
  static const KernelTable reference = reference_table(), avx2 = avx2_table(), avx512 = avx512_table();
  switch (resolve_kernel_path(path)) {
    case KernelPath::Avx512: return avx512;
    case KernelPath::Avx2: return avx2;
    default: return reference;
  }
}

}  // namespace kernels

}  // namespace qnoise
